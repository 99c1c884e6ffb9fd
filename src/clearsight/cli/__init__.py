"""The ``clearsight`` command: one module per group of commands, all on one Typer app.

Heavy libraries (TensorFlow, Great Expectations, MLflow, Prefect) are imported inside the
commands that need them, so ``clearsight --help`` answers at once. Every expected failure,
a wrong option value included, is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Protocol, TypeGuard

import typer

from clearsight.cli import (  # noqa: F401  (registering the commands is the import)
    config_command,
    data_commands,
    model_commands,
    monitor_command,
    serving_commands,
)
from clearsight.cli.app import app
from clearsight.cli.output import err_console
from clearsight.errors import Terminated
from clearsight.offline import quiet_output

__all__ = ["app", "main"]


class ClickError(Protocol):
    """What every Click exception has, which is all ``main`` relies on."""

    exit_code: int

    def format_message(self) -> str: ...


def is_usage_error(err: BaseException) -> TypeGuard[ClickError]:
    """Typer's own parse errors (a wrong choice, an unknown command, a missing file).

    Typer vendors its Click (``typer._click``, private), so they are recognised by what every
    Click exception has rather than imported by class.
    """
    return hasattr(err, "format_message") and isinstance(getattr(err, "exit_code", None), int)


def main() -> None:
    """Run the command; usage mistakes and Ctrl-C end in one line, never a traceback."""
    quiet_output()
    try:
        code = app(standalone_mode=False)
    except typer.Exit as err:
        code = err.exit_code
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted")
        code = 130
    except Terminated as err:  # SIGTERM: the run was cleaned up on the way out
        err_console.print("error: terminated (SIGTERM); nothing half-done was kept")
        code = err.code
    except Exception as err:
        if not is_usage_error(err):
            raise
        context = getattr(err, "ctx", None)  # a click.Context, on the errors that carry one
        if type(err).__name__ == "NoArgsIsHelpError" and context is not None:
            print(context.get_help())  # bare `clearsight data`: the help, as --help would
            code = 0
        else:
            err_console.print(f"[red]error:[/red] {err.format_message()}", highlight=False)
            code = 1
    sys.exit(code if isinstance(code, int) else 0)
