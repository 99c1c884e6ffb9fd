"""The ``clearsight`` command.

Heavy libraries (TensorFlow, Great Expectations, MLflow, Prefect) are imported inside the
commands that need them, so ``clearsight --help`` answers at once. Every expected failure is a
``ClearsightError``: ``user_errors`` prints its one line and exits 1, never a traceback.
``serve`` and ``build-service`` drive BentoML through the ``serving`` adapter of a source
checkout; the library itself never imports a serving framework.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clearsight.choices import CHAMPION, METHOD_NAMES, Backend, ResizePolicy, SourceName
from clearsight.errors import BackendUnavailable, ClearsightError, ConfigurationError

if TYPE_CHECKING:
    from clearsight.config import Settings
    from clearsight.data.contract import ValidationReport

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
BentoOpt = Annotated[
    str | None,
    typer.Option(help="Serve a built bento (e.g. clearsight:latest) instead; no MLflow."),
]
HostOpt = Annotated[str, typer.Option(help="Interface to bind; loopback by default.")]
ResizeOpt = Annotated[
    ResizePolicy | None, typer.Option(help="Folder images not 28x28: fit, stretch or reject.")
]


# Typer lists choices of repeatable options only for enums (not for a list of Literal).
MethodChoice = enum.Enum("MethodChoice", {name: name for name in METHOD_NAMES}, type=str)


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


def load_settings(**data_overrides: Any) -> Settings:
    """Settings from env/TOML, with the command line's data options on top."""
    from clearsight.config import Settings

    return Settings().override("data", **data_overrides)


def new_table(title: str | None, *columns: str) -> Table:
    """A rich table with these columns; long cells fold rather than being cut."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


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
    if report.json_path:
        console.print(f"report: {report.json_path}")
    if report.docs_path:
        console.print(f"data docs: {report.docs_path}")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for other tools.")]


def print_json(payload: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    import json

    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@data_app.command("describe")
def data_describe(
    source: SourceOpt = None,
    path: PathOpt = None,
    folder_resize: ResizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a source holds and how it splits (no validation)."""
    with user_errors():
        import numpy as np

        from clearsight.data import HoldoutStore, load, make_splits
        from clearsight.digits import N_CLASSES

        settings = load_settings(source=source, path=path, folder_resize=folder_resize)
        dataset = load(settings.data)
        splits = make_splits(dataset, settings.data, HoldoutStore(settings.holdout_dir))
        per_split = {
            name: {
                "images": len(ds),
                "per_class": np.bincount(ds.labels[ds.labels >= 0], minlength=N_CLASSES).tolist(),
                "sha256": ds.digest,
            }
            for name, ds in splits.items()
        }
        if as_json:
            print_json(
                {
                    "origin": dataset.origin,
                    "images": len(dataset),
                    "shape": list(dataset.images.shape[1:]),
                    "dtype": str(dataset.images.dtype),
                    "sha256": dataset.digest,
                    "splits": per_split,
                    "holdout": {"frozen": splits.holdout_frozen, "folder": settings.holdout_dir},
                }
            )
            return
        console.print(f"[bold]{dataset.origin}[/bold]")
        console.print(
            f"{len(dataset)} images, shape {dataset.images.shape[1:]}, "
            f"dtype {dataset.images.dtype}, digest {dataset.digest[:16]}"
        )
        table = new_table("splits", "split", "images", "per class", "sha256")
        for name, row in per_split.items():
            counts = " ".join(map(str, row["per_class"]))
            table.add_row(name, str(row["images"]), counts, row["sha256"][:16])
        console.print(table)
        frozen = "frozen (reused)" if splits.holdout_frozen else "new (frozen after validation)"
        console.print(f"holdout: {frozen} in {settings.holdout_dir}")


@data_app.command("validate")
def data_validate(
    source: SourceOpt = None, path: PathOpt = None, folder_resize: ResizeOpt = None
) -> None:
    """Check a source against the data contract; exit 1 listing failed expectations."""
    with user_errors():
        from clearsight.data.gate import run_data_gate

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
        from clearsight.data.contract import build_reference

        settings = load_settings(source=source, path=path)
        dataset = load(settings.data)
        splits = make_splits(dataset, settings.data, HoldoutStore(settings.holdout_dir))
        reference = build_reference(profile_splits(splits), dataset.origin)
        target = settings.reference_profile_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(reference, indent=2) + "\n")
        console.print(f"reference profile of {len(dataset)} images written to {target}")


def use_backend(backend: str | None) -> None:
    """Choose the Keras backend; must happen before anything imports keras."""
    if not backend:
        return
    if importlib.util.find_spec(backend) is None:
        raise BackendUnavailable(
            f"the {backend} backend needs the '{backend}' package, which is not installed"
        )
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise BackendUnavailable(f"keras is already loaded with another backend than {backend}")
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
        from clearsight.data.gate import run_data_gate
        from clearsight.tracking.run import run_training

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
    host: HostOpt = "127.0.0.1",
) -> None:
    """Start the MLflow UI on the local tracking store (loopback only by default)."""
    with user_errors():
        from clearsight.tracking.store import tracking_uri

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
        list[MethodChoice] | None,
        typer.Option("--method", "-m", help="Repeat for several methods."),
    ] = None,
    model_ref: Annotated[
        str, typer.Option("--model", help="Alias (champion, challenger) or version number.")
    ] = CHAMPION,
    out: Annotated[Path, typer.Option(help="Folder for the overlay PNGs.")] = Path("explanations"),
) -> None:
    """Explain one image with the registry's model: overlays, prediction and quality numbers."""
    with user_errors():
        import tempfile

        from clearsight.reporting.image_report import explain_file

        settings = load_settings()
        methods = [m.value for m in method] if method else ["integrated_gradients", "grad_cam"]
        with tempfile.TemporaryDirectory() as tmp:
            from clearsight.tracking.registry import load_model_ref

            model, version = load_model_ref(settings, model_ref, Path(tmp))
            result = explain_file(model, image, methods, out)
        console.print(
            f"{settings.tracking.registered_model} v{version}: predicted "
            f"[bold]{result.label}[/bold] ({result.confidence:.1%})"
        )
        table = new_table("explanations", "method", "overlay", "seconds", "completeness gap")
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
        from clearsight.tracking.registry import evaluate_and_promote

        settings = load_settings()
        store = HoldoutStore(settings.holdout_dir)
        if not store.exists():
            raise ConfigurationError(
                f"no frozen holdout in {settings.holdout_dir}; run a training first"
            )
        decision = evaluate_and_promote(settings, store.load(), version)
        console.print(decision.to_markdown(), markup=False, highlight=False, soft_wrap=True)


@app.command()
def rollback() -> None:
    """Make the previous champion the champion again (repeatable)."""
    with user_errors():
        from clearsight.tracking.registry import rollback as roll_back

        settings = load_settings()
        old, new = roll_back(settings)
        console.print(
            f"{settings.tracking.registered_model}: champion v{old} -> v{new} (rolled back)"
        )


@app.command()
def models() -> None:
    """Show the registry's aliases and champion history."""
    with user_errors():
        from clearsight.tracking.registry import registry_state

        state = registry_state(load_settings())
        for key, value in state.items():
            console.print(f"{key}: {value}")


ModelRefOpt = Annotated[
    str, typer.Option("--model", help="Registry alias (champion, challenger) or version number.")
]


def bento_store(settings: Settings) -> ModuleType:
    """The ``serving.bento_store`` adapter of the source checkout at ``settings.home``.

    Building and serving bentos is BentoML's business, so it lives in ``serving/`` beside the
    service it builds; the library imports it only here, on demand, from a source checkout.
    """
    root = settings.home
    if not (root / "serving" / "bento_store.py").is_file():
        raise ConfigurationError(
            f"{root} holds no serving/bento_store.py: run this from a source checkout "
            "(or set CLEARSIGHT_HOME to one)"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("serving.bento_store")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on the host interface.")] = 3000,
    host: HostOpt = "127.0.0.1",
    model_ref: ModelRefOpt = CHAMPION,
    bento: BentoOpt = None,
) -> None:
    """Serve predictions and explanations over HTTP (BentoML); Ctrl-C stops it.

    Without --bento, the registry's model (the champion by default) is imported into the
    BentoML store first and the service runs from this checkout's serving/.
    """
    with user_errors():
        settings = load_settings()
        store = bento_store(settings)
        if bento:
            command = store.serve_command(bento, host=host, port=port)
            what = f"bento {bento}"
        else:
            imported = store.import_model(settings, model_ref)
            command = store.serve_command(
                store.SERVICE_IMPORT,
                host=host,
                port=port,
                model=imported.tag,
                working_dir=settings.home,
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

        for image in images:
            if not image.is_file():
                raise ConfigurationError(f"{image}: no such file")
        answer = predict_files(url, images, explain=explain, api_key=api_key)
        model = answer["model"]
        console.print(f"{model['name']} v{model['version']} ({model['bento_model']})")
        table = new_table(None, "image", "status", "label", "confidence", "explanations")
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
    model_ref: ModelRefOpt = CHAMPION,
    export: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained archive (bento + model) to this file."),
    ] = None,
) -> None:
    """Build the bento that serves the registry's champion (import it into BentoML first)."""
    with user_errors():
        settings = load_settings()
        store = bento_store(settings)
        built = store.build_service(settings, model_ref)
        console.print(
            f"[green]bento {built.bento_tag}[/green] serves {built.model_tag} "
            f"(run {built.provenance.run_id})"
        )
        console.print(f"bento folder: {built.path}")
        if export is not None:
            exported = store.export_service(built.bento_tag, export)
            console.print(f"exported (bento + model): {exported}")
        console.print(f"serve it: [bold]clearsight serve --bento {built.bento_tag}[/bold]")


def main() -> None:
    """Entry point that keeps Ctrl-C quiet."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
