"""The optional C accelerator, ``replicator._speedups``, found in one place.

``replicator/_speedups.c`` (built by ``setup.py`` where a C compiler exists; the build is optional)
does what the pure-Python reference code in :mod:`replicator.events`, :mod:`replicator.convert`
and :mod:`replicator.plan` does for well-formed input, several times faster, and answers "not
mine" (None) for anything else, so the reference always decides errors and odd shapes. Without
it everything works the same, slower: another platform's wheel, no compiler, or
``REPLICATOR_PURE_PYTHON=1`` (the tests run both ways; the benchmark reports both).
"""

from __future__ import annotations

import os
from typing import Any


def _load() -> Any:
    if os.environ.get("REPLICATOR_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from replicator import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _speedups


#: the C module (typed Any: it has no stubs), or None where it is not built or turned off
native: Any = _load()
