"""Options shared by several commands, with their closed sets of choices, and settings.

Closed sets come from ``clearsight.choices`` (Literal types, or an Enum where Typer needs one
for a repeatable option), so ``--help`` lists every valid value and a wrong one is refused
before any work starts.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clearsight.choices import METHOD_NAMES, Backend, ResizePolicy, SourceName
from clearsight.errors import BackendUnavailable

if TYPE_CHECKING:
    from clearsight.config import Settings

SourceOpt = Annotated[SourceName | None, typer.Option("--source", "-s", help="Image source.")]
PathOpt = Annotated[
    Path | None, typer.Option("--path", "-p", help="File or folder for idx, npz and folder.")
]
ResizeOpt = Annotated[
    ResizePolicy | None,
    typer.Option(help="Digit-rule folder images not 28x28: fit, stretch or reject."),
]
HeightOpt = Annotated[
    int | None, typer.Option("--height", min=1, help="Image height; default: the most common.")
]
WidthOpt = Annotated[
    int | None, typer.Option("--width", min=1, help="Image width; default: the most common.")
]
ChannelsOpt = Annotated[
    int | None,
    typer.Option("--channels", min=1, max=3, help="1 (grey) or 3 (colour); default: most common."),
]
DigitRulesOpt = Annotated[
    bool | None,
    typer.Option(
        "--digit-rules/--no-digit-rules",
        help="MNIST-only steps (polarity rule, crop-and-centre); default: on for the digit "
        "sources (embedded, idx, keras, npz), off for folder.",
        show_default=False,
    ),
]
BackendOpt = Annotated[Backend | None, typer.Option(help="Keras backend.")]
ModelRefOpt = Annotated[
    str, typer.Option("--model", help="Registry alias (champion, challenger) or version number.")
]
HostOpt = Annotated[str, typer.Option(help="Interface to bind; loopback by default.")]
BentoOpt = Annotated[
    str | None,
    typer.Option(help="Serve a built bento (e.g. clearsight:latest) instead; no MLflow."),
]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Maximum epochs (early stopping).")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for weights and shuffling.")]

# Typer lists choices of repeatable options only for enums (not for a list of Literal).
# mypy cannot read members built from a tuple: it sees an Enum without known members.
MethodChoice = enum.Enum("MethodChoice", {name: name for name in METHOD_NAMES}, type=str)  # type: ignore[misc]


def load_settings(**data_overrides: Any) -> Settings:
    """Settings from env/TOML, with the command line's data options on top."""
    from clearsight.config import Settings

    return Settings().override("data", **data_overrides)


def use_backend(backend: str | None) -> None:
    """Choose the Keras backend; must happen before anything imports keras."""
    if not backend:
        return
    if importlib.util.find_spec(backend) is None:
        raise BackendUnavailable(
            f"the {backend} backend needs the '{backend}' package, which is not installed "
            f"(uv sync --extra {backend})"
        )
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise BackendUnavailable(f"keras is already loaded with another backend than {backend}")
    os.environ["KERAS_BACKEND"] = backend
