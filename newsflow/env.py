"""Process-wide defaults that must be set before Prefect or GX are imported.

They keep runs offline and quiet (no analytics, no phoning home) and give Prefect's
temporary server enough time to start on a slow machine; a value already set wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply() -> None:
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)
