"""Command-line NER over pre-tokenised sentences, in the JSONL format of score_ner.py.

Why a command: the NER benchmark (``/work/shared/bench/score_ner.py``) is tool-agnostic and
exchanges JSON lines, so our recogniser is scored the same way as any other system:

    python /work/shared/bench/score_ner.py sentences GOLD.conll > sents.jsonl
    python -m newsflow.ner_cmd sents.jsonl pred.jsonl
    python /work/shared/bench/score_ner.py score GOLD.conll pred.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def ner_jsonl(
    sents_path: str | Path, out_path: str | Path, baseline: bool = False, gazetteer: bool = True
) -> dict:
    """Read {"tokens": [...]} lines, write {"spans": [[s, e, "PER"|"ORG"|"LOC"], ...]} lines.

    Returns counts and timing. ``baseline=True`` uses plain spaCy sm with the label mapping
    only, for comparison; ``gazetteer=False`` runs our rules without the hand gazetteer.
    """
    from tasks.ner import baseline_tokens, recognise_tokens

    sentences: list[list[str]] = []
    with open(sents_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                sentences.append(list(json.loads(line).get("tokens", [])))
    from tasks.ner import _baseline_nlp, nlp

    (_baseline_nlp() if baseline else nlp(gazetteer))  # load outside the timed part
    t0 = time.perf_counter()
    if baseline:
        spans = baseline_tokens(sentences)
    else:
        spans = recognise_tokens(sentences, use_gazetteer=gazetteer)
    elapsed = time.perf_counter() - t0
    with open(out_path, "w", encoding="utf-8") as out:
        for sp in spans:
            out.write(json.dumps({"spans": [[s, e, lab] for s, e, lab in sp]}) + "\n")
    return {
        "sentences": len(sentences),
        "spans": sum(len(s) for s in spans),
        "tokens": sum(len(s) for s in sentences),
        "seconds": round(elapsed, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ner_cmd SENTS.jsonl PRED.jsonl [--baseline]."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sents")
    ap.add_argument("out")
    ap.add_argument("--baseline", action="store_true", help="plain spaCy sm label mapping")
    a = ap.parse_args(argv)
    print(json.dumps(ner_jsonl(a.sents, a.out, a.baseline)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
