"""Tables people compare: the diff, the run summary. Rendered with rich."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.convergence import Diff, extended_json

MAX_ROWS = 50


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(extended_json(value), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def diff_table(diff: Diff, title: str = "Differences") -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("_id")
    table.add_column("what / field path")
    table.add_column("expected (source)")
    table.add_column("actual (target)")
    rows = 0
    for document_id in diff.missing:
        table.add_row(_short(document_id), "missing in target", "", "")
        rows += 1
    for document_id in diff.extra:
        table.add_row(_short(document_id), "extra in target", "", "")
        rows += 1
    for changed in diff.changed:
        for field in changed.fields:
            table.add_row(
                _short(changed.document_id), field.path, _short(field.expected), _short(field.actual)
            )
            rows += 1
            if rows >= MAX_ROWS:
                break
        if rows >= MAX_ROWS:
            break
    total = len(diff.missing) + len(diff.extra) + sum(len(c.fields) for c in diff.changed)
    if total > rows:
        table.caption = f"{total - rows} more differences in the JSON report"
    return table


def summary_table(rows: list[tuple[str, Any]], title: str = "Summary") -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def print_diff(console: Console, diff: Diff, title: str = "Differences") -> None:
    if diff.converged:
        console.print(
            f"[green]converged[/green]: {diff.actual_count} documents match the source"
        )
    else:
        console.print(diff_table(diff, title))
        console.print(
            f"[red]diverged[/red]: {len(diff.missing)} missing, {len(diff.extra)} extra, "
            f"{len(diff.changed)} documents differ"
        )
