"""Count instructions in one region of a benchmark under callgrind, nothing else.

    valgrind --tool=callgrind --instr-atstart=no python benchmarks/SCRIPT ... --callgrind

``region()`` switches callgrind's instrumentation on for the ``with`` block only (callgrind's
client requests ``CALLGRIND_START_INSTRUMENTATION`` / ``STOP``, from ``valgrind/callgrind.h``), so
the total in the callgrind output file is the block's instructions: start-up, input generation
and the untimed preparation are not counted, and one run gives a per-event figure. The requests
are machine-code sequences only a C compiler emits, hence the few lines of C compiled here on
first use (``cc`` and valgrind's headers needed). Outside valgrind they do nothing.
"""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SOURCE = """
#include <valgrind/callgrind.h>
void region_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void region_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def _library() -> ctypes.CDLL:
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"callgrind_region_{digest}.so"
    if not path.exists():
        source = path.with_suffix(".c")
        source.write_text(SOURCE)
        subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(path), str(source)], check=True)
    return ctypes.CDLL(str(path))


@contextmanager
def region(enabled: bool = True) -> Iterator[None]:
    """Instrument only the block (when ``enabled``; a no-op otherwise)."""
    if not enabled:
        yield
        return
    library = _library()
    library.region_start()
    try:
        yield
    finally:
        library.region_stop()
