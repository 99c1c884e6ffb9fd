"""The Typer applications every command module registers on, and ``--version``."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="Validated data, tracked training and measured explanations for Keras image models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
)
data_app = typer.Typer(help="Inspect and validate image sources.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from clearsight import __version__

        print(f"clearsight {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Keep TensorFlow's start-up lines on stderr (hidden by default).",
        ),
    ] = False,
) -> None:
    """Validated data, tracked training and measured explanations for Keras image models."""
    from clearsight.cli.framework_noise import set_verbose

    set_verbose(verbose)
