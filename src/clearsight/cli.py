"""The ``clearsight`` command.

Heavy libraries (TensorFlow, Great Expectations, MLflow, Prefect) are imported inside the
commands that need them, so ``clearsight --help`` answers at once. Expected failures (bad
source, broken contract) print one red line per problem and exit non-zero, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from clearsight.choices import ResizePolicy, SourceName

if TYPE_CHECKING:
    from clearsight.config import Settings
    from clearsight.validation import ValidationReport

app = typer.Typer(
    help="Validated data, tracked training and measured explanations for Keras image models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and validate image sources.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line

SourceOpt = Annotated[
    SourceName | None, typer.Option("--source", "-s", help="embedded, idx, npz, folder or keras.")
]
PathOpt = Annotated[
    Path | None, typer.Option("--path", "-p", help="File or folder for idx, npz and folder.")
]
ResizeOpt = Annotated[
    ResizePolicy | None, typer.Option(help="Folder images not 28x28: fit, stretch or reject.")
]


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's expected errors into a one-line message and exit status 1."""
    from pydantic import ValidationError

    from clearsight.data import DataSourceError
    from clearsight.errors import RegistryError
    from clearsight.validation import DataValidationError

    try:
        yield
    except DataValidationError as err:
        print_report(err.report)
        err_console.print(f"[red]error:[/red] {str(err).splitlines()[0]}")
        raise typer.Exit(1) from None
    except (CliError, DataSourceError, FileNotFoundError, ValidationError, RegistryError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        err_console.print(f"[red]error:[/red] {message}", highlight=False)
        raise typer.Exit(1) from None


def load_settings(**data_overrides: Any) -> Settings:
    """Settings from env/TOML, with the command line's data options on top."""
    from clearsight.config import Settings

    return Settings().override("data", **data_overrides)


def print_report(report: ValidationReport) -> None:
    """The contract's verdict as a table, then where the reports are."""
    table = Table(title=f"Data contract ({report.n_rows} images)", show_lines=False)
    for column in ("", "expectation", "column", "rule", "observed"):
        table.add_column(column, overflow="fold")
    for o in report.outcomes:
        mark = "[green]pass[/green]" if o.success else "[red]FAIL[/red]"
        short = o.expectation.removeprefix("expect_column_")
        table.add_row(mark, short, o.column, o.description, o.observed)
    console.print(table)
    if report.json_path:
        console.print(f"report: {report.json_path}")
    if report.docs_path:
        console.print(f"data docs: {report.docs_path}")


@data_app.command("describe")
def data_describe(
    source: SourceOpt = None, path: PathOpt = None, folder_resize: ResizeOpt = None
) -> None:
    """Show what a source holds and how it splits (no validation)."""
    with user_errors():
        import numpy as np

        from clearsight.data import HoldoutStore, load, make_splits

        settings = load_settings(source=source, path=path, folder_resize=folder_resize)
        dataset = load(settings.data)
        splits = make_splits(dataset, settings.data, HoldoutStore(settings.holdout_dir))
        console.print(f"[bold]{dataset.origin}[/bold]")
        console.print(
            f"{len(dataset)} images, shape {dataset.images.shape[1:]}, "
            f"dtype {dataset.images.dtype}, digest {dataset.digest[:16]}"
        )
        table = Table(title="splits")
        for column in ("split", "images", "per class", "sha256"):
            table.add_column(column)
        for name, ds in splits.items():
            counts = np.bincount(ds.labels[ds.labels >= 0], minlength=10)
            table.add_row(name, str(len(ds)), " ".join(map(str, counts)), ds.digest[:16])
        console.print(table)
        frozen = "frozen (reused)" if splits.holdout_frozen else "new (frozen after validation)"
        console.print(f"holdout: {frozen} in {settings.holdout_dir}")


@data_app.command("validate")
def data_validate(
    source: SourceOpt = None, path: PathOpt = None, folder_resize: ResizeOpt = None
) -> None:
    """Check a source against the data contract; exit 1 listing failed expectations."""
    with user_errors():
        from clearsight.data_gate import run_data_gate

        settings = load_settings(source=source, path=path, folder_resize=folder_resize)
        gated = run_data_gate(settings)
        print_report(gated.report)
        console.print("[green]data contract passed[/green]")


@data_app.command("reference")
def data_reference(source: SourceOpt = None, path: PathOpt = None) -> None:
    """Rewrite the reference profile that drift checks compare against, from a source."""
    with user_errors():
        import json

        from clearsight.data import HoldoutStore, load, make_splits, profile_splits
        from clearsight.validation import build_reference

        settings = load_settings(source=source, path=path)
        dataset = load(settings.data)
        splits = make_splits(dataset, settings.data, HoldoutStore(settings.holdout_dir))
        reference = build_reference(profile_splits(splits), dataset.origin)
        target = settings.reference_profile_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(reference, indent=2) + "\n")
        console.print(f"reference profile of {len(dataset)} images written to {target}")


Backend = Literal["tensorflow", "jax", "torch"]


def use_backend(backend: str | None) -> None:
    """Choose the Keras backend; must happen before anything imports keras."""
    if backend:
        if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
            raise CliError(f"keras is already loaded with another backend than {backend}")
        os.environ["KERAS_BACKEND"] = backend


@app.command()
def train(
    source: SourceOpt = None,
    path: PathOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (early stopping).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam start rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for weights and shuffling.")] = None,
    backend: Annotated[Backend | None, typer.Option(help="Keras backend.")] = None,
) -> None:
    """Validate the data, train the CNN and log a complete MLflow run."""
    with user_errors():
        use_backend(backend)
        settings = load_settings(source=source, path=path).override(
            "train", epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed
        )
        from clearsight.data_gate import run_data_gate
        from clearsight.experiment import run_training

        gated = run_data_gate(settings)
        console.print(f"data contract passed ({gated.report.n_rows} images)")
        run = run_training(settings, gated)
        m = run.metrics
        console.print(
            f"[green]run {run.run_id}[/green]: holdout accuracy {m['holdout_accuracy']:.4f}, "
            f"macro F1 {m['holdout_macro_f1']:.4f}, {int(m['epochs_run'])} epochs"
        )
        console.print(f"model {run.registered_model} version {run.version} ({run.model_uri})")
        console.print(f"tracking store: {run.tracking_uri}")
        console.print(f"open it: [bold]clearsight ui[/bold], then run {run.run_id}")


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Start the MLflow UI on the local tracking store (loopback only by default)."""
    with user_errors():
        from clearsight.tracking import tracking_uri

        settings = load_settings()
        uri = tracking_uri(settings)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # One worker and no job runners: ready in about 15 s instead of 35 s.
        os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        console.print(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C stops it")
        os.execv(sys.executable, command)


@app.command("explain")
def explain_image(
    image: Annotated[Path, typer.Argument(help="PNG/JPEG of one digit (light on dark).")],
    method: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="Repeat for several methods.")
    ] = None,
    model_ref: Annotated[
        str, typer.Option("--model", help="Alias (champion, challenger) or version number.")
    ] = "champion",
    out: Annotated[Path, typer.Option(help="Folder for the overlay PNGs.")] = Path("explanations"),
) -> None:
    """Explain one image with the registry's model: overlays, prediction and quality numbers."""
    with user_errors():
        import tempfile

        from clearsight.explain_image import explain_file

        settings = load_settings()
        methods = method or ["integrated_gradients", "gradcam"]
        with tempfile.TemporaryDirectory() as tmp:
            from clearsight.registry import load_model_ref

            model, version = load_model_ref(settings, model_ref, Path(tmp))
            result = explain_file(model, image, methods, out)
        console.print(
            f"{settings.tracking.registered_model} v{version}: predicted "
            f"[bold]{result.label}[/bold] ({result.confidence:.1%})"
        )
        table = Table(title="explanations")
        for column in ("method", "overlay", "seconds", "completeness gap"):
            table.add_column(column)
        for row in result.rows:
            gap = "" if row.completeness_gap is None else f"{row.completeness_gap:.2%}"
            table.add_row(row.method, str(row.overlay), f"{row.seconds:.3f}", gap)
        console.print(table)
        for name, value in result.quality.items():
            console.print(f"{name}: {value:.4g}")


VersionOpt = Annotated[
    str | None, typer.Option("--version", "-v", help="Model version (default: the newest).")
]


@app.command()
def promote(version: VersionOpt = None) -> None:
    """Score a version against the champion on the frozen holdout; move aliases on a pass."""
    with user_errors():
        from clearsight.data import HoldoutStore
        from clearsight.pipeline import explanation_scorer
        from clearsight.registry import evaluate_and_promote

        settings = load_settings()
        store = HoldoutStore(settings.holdout_dir)
        if not store.exists():
            raise CliError(f"no frozen holdout in {settings.holdout_dir}; run a training first")
        decision = evaluate_and_promote(
            settings, store.load(), version, explanation_scorer(settings.promotion.panel_size)
        )
        console.print(decision.to_markdown(), markup=False, highlight=False, soft_wrap=True)


@app.command()
def rollback() -> None:
    """Make the previous champion the champion again (repeatable)."""
    with user_errors():
        from clearsight.registry import rollback as roll_back

        settings = load_settings()
        old, new = roll_back(settings)
        console.print(
            f"{settings.tracking.registered_model}: champion v{old} -> v{new} (rolled back)"
        )


@app.command()
def models() -> None:
    """Show the registry's aliases and champion history."""
    with user_errors():
        from clearsight.registry import registry_state

        state = registry_state(load_settings())
        for key, value in state.items():
            console.print(f"{key}: {value}")


ModelRefOpt = Annotated[
    str, typer.Option("--model", help="Registry alias (champion, challenger) or version number.")
]


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on the host interface.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = (
        "127.0.0.1"
    ),
    model_ref: ModelRefOpt = "champion",
    bento: Annotated[
        str | None,
        typer.Option(help="Serve a built bento (e.g. clearsight:latest) instead; no MLflow."),
    ] = None,
) -> None:
    """Serve predictions and explanations over HTTP (BentoML); Ctrl-C stops it.

    Without --bento, the registry's model (the champion by default) is imported into the
    BentoML store first and the service runs from this checkout's serving/.
    """
    with user_errors():
        from clearsight.bento import SERVICE_IMPORT, import_model, serve_command, source_root

        if bento:
            command = serve_command(bento, host=host, port=port)
            what = f"bento {bento}"
        else:
            settings = load_settings()
            root = source_root(settings)
            imported = import_model(settings, model_ref)
            command = serve_command(
                SERVICE_IMPORT, host=host, port=port, model=imported.tag, working_dir=root
            )
            what = f"{imported.tag} ({model_ref})"
        console.print(f"serving {what} on http://{host}:{port} (docs at /); Ctrl-C stops it")
        os.execv(sys.executable, command)


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="PNG/JPEG digits (light on dark).")],
    explain: Annotated[
        bool, typer.Option("--explain", help="Also explain (IG + Grad-CAM overlays).")
    ] = False,
    url: Annotated[str, typer.Option(help="The service.")] = "http://127.0.0.1:3000",
    out: Annotated[
        Path | None, typer.Option(help="Folder for the overlay PNGs (with --explain).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="CLEARSIGHT_API_KEY", help="Key, if the service has one.")
    ] = None,
) -> None:
    """Ask a running service (clearsight serve) about image files; print what it says."""
    with user_errors():
        from clearsight.inference.client import predict_files, save_overlays
        from clearsight.inference.errors import ServiceError

        for image in images:
            if not image.is_file():
                raise CliError(f"{image}: no such file")
        try:
            answer = predict_files(url, images, explain=explain, api_key=api_key)
        except ServiceError as err:
            raise CliError(str(err)) from None
        model = answer["model"]
        console.print(f"{model['name']} v{model['version']} ({model['bento_model']})")
        table = Table()
        for column in ("image", "status", "label", "confidence", "explanations"):
            table.add_column(column, overflow="fold")
        for result in answer["results"]:
            explained = ", ".join(
                f"{e['method']}"
                + (
                    ""
                    if e["quality"]["completeness_gap"] is None
                    else f" (gap {e['quality']['completeness_gap']:.1%})"
                )
                for e in result["explanations"]
            )
            status = result["status"] + (f": {result['error']}" if result["error"] else "")
            confidence = "" if result["confidence"] is None else f"{result['confidence']:.1%}"
            label = "" if result["label"] is None else str(result["label"])
            table.add_row(str(images[result["index"]]), status, label, confidence, explained)
        console.print(table)
        for result in answer["results"]:
            for warning in result["warnings"]:
                console.print(f"[yellow]warning:[/yellow] {images[result['index']]}: {warning}")
        if explain and out is not None:
            for path in save_overlays(answer, images, out):
                console.print(f"overlay: {path}")


@app.command("build-service")
def build_service(
    model_ref: ModelRefOpt = "champion",
    export: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained archive (bento + model) to this file."),
    ] = None,
) -> None:
    """Build the bento that serves the registry's champion (import it into BentoML first)."""
    with user_errors():
        from clearsight.bento import build_service as build
        from clearsight.bento import export_service

        built = build(load_settings(), model_ref)
        console.print(
            f"[green]bento {built.bento_tag}[/green] serves {built.model_tag} "
            f"(run {built.provenance.run_id})"
        )
        console.print(f"bento folder: {built.path}")
        if export is not None:
            console.print(f"exported (bento + model): {export_service(built.bento_tag, export)}")
        console.print(f"serve it: [bold]clearsight serve --bento {built.bento_tag}[/bold]")


def main() -> None:
    """Entry point that keeps Ctrl-C quiet."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
