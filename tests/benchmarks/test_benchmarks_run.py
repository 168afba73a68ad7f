"""Every benchmark script runs (issue 21: bench_lambda.py, the script behind BENCHMARKS.md's
headline figure, had stopped running when a helper it imported moved).

Each script in benchmarks/ runs in its quick form (``--quick``: a few seconds of work) in a
subprocess with this checkout on its path; the test asserts only that it exits 0 and prints
figures. The figures themselves are not asserted: they depend on the machine and its load.
Parametrized over the files in benchmarks/, so a new script is covered without editing this file;
a file that is not a script to run must be listed in NOT_RUN with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"

#: files of benchmarks/ that are not run here, and why
NOT_RUN = {
    "bench_common.py": "helpers imported by the scripts (no main)",
    "bench_conversion.py": "measure (a) of bench_core.py, run through it (no main)",
    "bench_core_report.py": "bench_core.py's report, run through it (no main)",
    "callgrind_region.py": "helper of bench_tombstones.py (no main)",
    "wire_responder.py": "the wire server bench_wire/bench_lambda/bench_tombstones start and stop; "
                         "it serves until killed, so it runs through them",
}

SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))


def test_every_file_is_a_script_or_listed() -> None:
    assert set(NOT_RUN) <= set(SCRIPTS), f"listed but gone: {set(NOT_RUN) - set(SCRIPTS)}"
    for name in SCRIPTS:
        text = (BENCHMARKS / name).read_text()
        if name not in NOT_RUN:
            assert '__name__ == "__main__"' in text, f"{name}: no main; list it in NOT_RUN"
            assert "--quick" in text, f"{name}: no --quick mode"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SCRIPTS if n not in NOT_RUN])
def test_benchmark_runs_quickly(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), "--quick"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, f"{name} --quick exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert re.search(r"\d", done.stdout), f"{name} --quick printed no figures:\n{done.stdout}"
