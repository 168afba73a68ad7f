"""The ``harness`` Typer app and what its commands share: the redacting command group, the consoles,
and the checks and messages every command uses."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup
from typer.exceptions import TyperException

from harness.backends.base import DEFAULT_TARGET, target_backend
from replicator.redact import install_log_redaction, redact, redact_known, secrets_in_argv


class RedactingGroup(TyperGroup):
    """click echoes bad arguments in its usage errors (``Got unexpected extra argument
    (mongodb://user:password@...)``, ``No such command 'mongodb://...'``) and rich may wrap the
    message across lines: redact it before it is rendered. Also for ``CliRunner``."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        install_log_redaction(secrets_in_argv(argv))
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except TyperException as error:  # typer's (vendored) click.ClickException and UsageError
            message = getattr(error, "message", None)
            if isinstance(message, str):
                error.message = redact_known(redact(message, secrets_in_argv(argv)))
            if not standalone_mode:
                raise
            try:
                from typer.rich_utils import rich_format_error
            except ImportError:  # typer without rich
                error.show()  # type: ignore[attr-defined]
            else:
                rich_format_error(error)  # type: ignore[arg-type]
            sys.exit(getattr(error, "exit_code", 1))
        except typer.Abort:
            if not standalone_mode:
                raise
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=RedactingGroup,
    add_completion=False,
    no_args_is_help=True,
    # Locals in tracebacks could hold a MongoDB URI with its password: never show them.
    pretty_exceptions_show_locals=False,
    help="Dev kit for DynamoDB Streams -> MongoDB replication: scenarios, replay, chaos.",
)
console = Console(stderr=False)
# soft_wrap: a message is one line that the terminal wraps, never cut by rich at its width (80
# columns off a TTY): a file path or a command in it stays whole, to copy and paste
err = Console(stderr=True, soft_wrap=True)


def check_names(source: str | None = None, target: str | None = None) -> None:
    """A mistyped --source/--target ends in one line naming the valid ones (exit 2), before any
    emulator or container starts."""
    from harness.backends.base import SOURCES, TARGETS, iter_registered

    list(iter_registered())  # imports the backend modules, which register themselves
    for kind, name, known in (("source", source, SOURCES), ("target", target, TARGETS)):
        if name is not None and name not in known:
            fail(f"unknown {kind} {name!r}; valid: {', '.join(sorted(known))}")


def parent_ready(*paths: Path | None) -> None:
    """Create the folders of the report/plot/dump paths before the run, not after it."""
    for path in paths:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fail(f"cannot create the folder for {path}: {error}")
        if path.is_dir():
            fail(f"{path} is a folder; give a file name")


def wrote(what: str, path: Path) -> None:
    err.print(f"wrote {what} to {path.resolve()}", highlight=False, markup=False)


def target_for(name: str | None, uri: str | None) -> Any:
    if uri:
        return target_backend("uri", uri=uri)
    return target_backend(name or DEFAULT_TARGET)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )


def fail(message: str) -> NoReturn:
    # Messages may quote an argument (a mistyped URI given as a scenario path): redact them all.
    # escaped: a message may hold brackets rich would take for markup ('moto[dynamodb,server]')
    err.print(f"[red]error:[/red] {escape(redact_known(message))}", highlight=False, markup=True)
    raise typer.Exit(2)
