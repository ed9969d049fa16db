"""The article's language when its page declares none: English or not, from its words.

Shared by extraction (which language htmldate's date fallback reads an undated page in) and
enrichment (which articles the English models run on), so both stages take the same view of
one page.
"""

from __future__ import annotations

import re

WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
_EN_STOP = frozenset(
    "the of and to in a is that for on with as was at by it from he said be has have are his "
    "an not this but they were which will their who been had its would after more also".split()
)


def looks_english(text: str) -> bool:
    """Cheap check for articles whose language is unknown: share of common English words."""
    words = [w.lower() for w in WORD.findall(text[:3000])]
    return len(words) >= 5 and sum(w in _EN_STOP for w in words) / len(words) >= 0.15
