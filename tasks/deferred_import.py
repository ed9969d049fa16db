"""Stand-ins for modules that a library imports at module level but a run never uses.

Great Expectations imports ``scipy.stats`` and ``altair`` when it registers its
expectations, for one expectation (KL divergence) that no newsflow suite has. Those imports
were 1.7 s of GX's 4.1 s import (CPU) and 76 MB of resident memory in the flow process,
paid during processing (GX is imported while the workers run, so it took CPU from them) and
held through the memory peak of a large run's dedup and load.

A stand-in sits in ``sys.modules`` until an attribute of the module is first read; then the
real module is imported and the stand-in forwards to it. So code that does use the module
still works; the cost moves to the first use instead of the import.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any

_LOCK = threading.RLock()


class DeferredModule(types.ModuleType):
    """In ``sys.modules`` in place of a module that is imported on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # importlib reads __spec__ of a module it finds in sys.modules (``_initializing``);
        # a real attribute keeps that read from loading the module.
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.load(), attr)

    def load(self) -> types.ModuleType:
        """Import the real module (once) and return it."""
        with _LOCK:
            real = self.__dict__.get("_deferred_real")
            if real is None:
                name = self.__name__
                if sys.modules.get(name) is self:
                    del sys.modules[name]
                try:
                    real = importlib.import_module(name)
                except BaseException:
                    sys.modules.setdefault(name, self)  # still deferred; the error propagates
                    raise
                self.__dict__.update(real.__dict__)  # later reads skip __getattr__
                self.__dict__["_deferred_real"] = real
            return real


def defer(name: str) -> bool:
    """Put a stand-in for ``name`` in ``sys.modules``; True if one was installed.

    Nothing is done when the module is already imported or is not installed (then the
    importer's own error is the right one).
    """
    with _LOCK:
        if name in sys.modules:
            return False
        try:
            if importlib.util.find_spec(name) is None:  # imports the parent package
                return False
        except ModuleNotFoundError:  # the parent package is missing
            return False
        sys.modules[name] = DeferredModule(name)
        return True
