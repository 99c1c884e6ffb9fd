"""What the CLI prints: tables for people, ``--json`` for tools, one red line per failure.

Every expected failure is a ``ClearsightError``; ``user_errors`` turns it into one line on
stderr and exit status 1 (a broken data contract also prints its table first). Long steps run
inside ``step(...)``, a spinner on stderr that stays out of ``--json`` output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clearsight.errors import ClearsightError

if TYPE_CHECKING:
    from clearsight.data.contract import ValidationReport

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for other tools.")]


def fail(message: str) -> typer.Exit:
    """Print one red error line; the caller raises the returned ``Exit(1)``."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@contextmanager
def user_errors() -> Iterator[None]:
    """Every expected failure (``ClearsightError``, invalid settings) as one line, exit 1."""
    from pydantic import ValidationError

    try:
        yield
    except ClearsightError as err:
        report = getattr(err, "report", None)
        if report is not None:  # a broken data contract: show which expectations failed
            print_report(report)
        raise fail(err.one_line()) from None
    except ValidationError as err:  # settings from the environment or clearsight.toml
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "settings"
        raise fail(f"invalid setting {where}: {first['msg']}") from None
    except Exception as err:  # a tracking store gone, a full disk: one line, not a traceback
        if "mlflow" not in sys.modules:
            raise
        from clearsight.tracking.faults import outage_line

        if (line := outage_line(err)) is None:
            raise
        raise fail(line) from None


@contextmanager
def step(text: str) -> Iterator[None]:
    """A spinner for a step that takes more than a second (on stderr, so JSON stays clean)."""
    with err_console.status(text):
        yield


def new_table(title: str | None, *columns: str) -> Table:
    """A rich table with these columns; long cells fold rather than being cut."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def print_json(payload: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def print_report(report: ValidationReport) -> None:
    """The contract's verdict as a table, then where the reports are."""
    table = new_table(
        f"Data contract ({report.n_rows} images)", "", "expectation", "column", "rule", "observed"
    )
    for o in report.outcomes:
        mark = "[green]pass[/green]" if o.success else "[red]FAIL[/red]"
        short = o.expectation.removeprefix("expect_column_")
        table.add_row(mark, short, o.column, o.description, o.observed)
    console.print(table)
    for note in report.extra.get("notes", []):
        console.print(f"note: {note}", markup=False)
    if report.json_path:
        console.print(f"report: {report.json_path}")
    if report.docs_path:
        console.print(f"data docs: {report.docs_path}")
