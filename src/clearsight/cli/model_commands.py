"""Training, retraining, promotion, rollback, the registry's state, one-image explanations."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from clearsight.choices import CHAMPION
from clearsight.cli.app import app
from clearsight.cli.framework_noise import import_keras
from clearsight.cli.options import (
    BackendOpt,
    ChannelsOpt,
    DigitRulesOpt,
    EpochsOpt,
    HeightOpt,
    HostOpt,
    MethodChoice,
    ModelRefOpt,
    PathOpt,
    SeedOpt,
    SourceOpt,
    WidthOpt,
    load_settings,
    use_backend,
)
from clearsight.cli.output import (
    JsonOpt,
    console,
    new_table,
    print_json,
    step,
    user_errors,
)
from clearsight.cli.serving_commands import notify_service
from clearsight.errors import ConfigurationError


@app.command()
def train(
    source: SourceOpt = None,
    path: PathOpt = None,
    epochs: EpochsOpt = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option(min=0, help="Adam start rate.")] = None,
    seed: SeedOpt = None,
    backend: BackendOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate the data, train the CNN and log a complete MLflow run (no promotion)."""
    with user_errors():
        use_backend(backend)
        settings = load_settings(source=source, path=path).override(
            "train", epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed
        )
        import_keras()  # first, so TensorFlow's start-up lines are filtered
        from clearsight.data.gate import run_data_gate
        from clearsight.pipelines.train import train_and_assess

        with step("checking the data contract (Great Expectations)"):
            gated = run_data_gate(settings)
        if not as_json:
            console.print(f"data contract passed ({gated.report.n_rows} images)")
        run = train_and_assess(settings, gated, verbose=0 if as_json else "auto", stage=step)
        if as_json:
            print_json(vars(run))
            return
        m = run.metrics
        console.print(
            f"[green]run {run.run_id}[/green]: holdout accuracy {m['holdout_accuracy']:.4f}, "
            f"macro F1 {m['holdout_macro_f1']:.4f}, {int(m['epochs_run'])} epochs"
        )
        console.print(f"model {run.registered_model} version {run.version} ({run.model_uri})")
        console.print(f"tracking store: {run.tracking_uri}")
        from clearsight.mlflow_links import mlflow_ui_link, ui_base

        link = mlflow_ui_link(ui_base(run.tracking_uri), run.experiment_id, run.run_id)
        local = not run.tracking_uri.startswith(("http://", "https://"))
        console.print(f"open it: {link}" + (" (after [bold]clearsight ui[/bold])" if local else ""))


@app.command()
def retrain(
    source: SourceOpt = None,
    path: Annotated[
        Path | None,
        typer.Option("--path", "-p", exists=True, help="File or folder for idx, npz and folder."),
    ] = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    channels: ChannelsOpt = None,
    digit_rules: DigitRulesOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    only_if_new_data: Annotated[
        bool,
        typer.Option(
            "--only-if-new-data",
            help="Skip training when a finished run (promoted or not) already trained on "
            "the newest data version.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The whole retrain flow (Prefect): ingest incoming batches, validate, train, promote if
    better, tell the service. ``--source folder --path DIR``: your own images, one subfolder
    per class (README "Your own images")."""
    with user_errors():
        settings = load_settings(  # checks the options up front
            source=source,
            path=path,
            image_height=height,
            image_width=width,
            image_channels=channels,
            digit_rules=digit_rules,
        )
        import_keras()  # first, so TensorFlow's start-up lines are filtered
        from flows.retrain import run_once  # the composition root: the CLI drives the flow

        data = settings.data
        # With --json, stdout carries the JSON only: the flow's progress (Keras's epoch lines,
        # Prefect's logs) goes to stderr.
        progress_out = sys.stderr if as_json else sys.stdout
        with contextlib.redirect_stdout(progress_out):
            summary = run_once(
                source=data.source,
                path=str(data.path) if data.path else None,
                epochs=epochs,
                seed=seed,
                only_if_new_data=only_if_new_data,
                image_height=data.image_height,
                image_width=data.image_width,
                image_channels=data.image_channels,
                digit_rules=data.digit_rules,
            )
        if summary is None:
            if as_json:
                print_json({"skipped": "no new data"})
            else:
                console.print("skipped: no new data (the champion was trained on the newest)")
            return
        if as_json:
            print_json(summary.to_dict())
        else:
            console.print(summary.to_markdown(), markup=False, highlight=False, soft_wrap=True)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
    host: HostOpt = "127.0.0.1",
) -> None:
    """Start the MLflow UI on the local tracking store (loopback only by default)."""
    with user_errors():
        from clearsight.mlflow_links import mlflow_ui_link
        from clearsight.tracking.store import configure, tracking_uri

        settings = load_settings()
        uri = tracking_uri(settings)
        # The experiment exists and is tagged as model training before the UI first shows it.
        experiment_id = configure(settings)
        # One worker and no job runners: ready in about 15 s instead of 35 s.
        os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
        command += ["--host", host, "--port", str(port), "--workers", "1"]
        link = mlflow_ui_link(f"http://{host}:{port}", experiment_id)
        console.print(f"MLflow UI on {link} (store {uri}); Ctrl-C stops it")
        os.execv(sys.executable, command)


@app.command("explain")
def explain_image(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="PNG/JPEG digit.")],
    method: Annotated[
        list[MethodChoice] | None,
        typer.Option("--method", "-m", help="Repeat for several methods."),
    ] = None,
    model_ref: ModelRefOpt = CHAMPION,
    out: Annotated[Path, typer.Option(help="Folder for the overlay PNGs.")] = Path("explanations"),
    use_cache: Annotated[
        bool,
        typer.Option("--cache/--no-cache", help="Use the local model cache (cache_dir)."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Explain one image with the registry's model: overlays, prediction and quality numbers.

    The version's model is kept in a local cache (``cache_dir``) after the first load, so the
    next explanation with the same version skips MLflow; ``--no-cache`` loads through MLflow.
    """
    with user_errors():
        import tempfile

        from clearsight.choices import DEFAULT_METHODS
        from clearsight.tracking.model_cache import load_cached

        settings = load_settings()
        methods = [m.value for m in method] if method else list(DEFAULT_METHODS)
        import_keras(lean=True)  # without Keras' unused optional imports: about 1 s sooner
        from clearsight.reporting.image_report import explain_file

        with tempfile.TemporaryDirectory() as tmp:
            with step(f"loading {model_ref} from the registry"):
                model, version, task = load_cached(
                    settings, model_ref, Path(tmp), use_cache=use_cache
                )
            with step(f"explaining {image.name} ({', '.join(methods)})"):
                result = explain_file(model, image, methods, out, task=task)
        if as_json:
            print_json(
                {
                    "model": settings.tracking.registered_model,
                    "version": version,
                    "label": result.label,
                    "class_name": result.class_name,
                    "confidence": result.confidence,
                    "probabilities": result.probabilities.tolist(),
                    "explanations": [vars(row) for row in result.rows],
                    "quality": result.quality,
                    "preprocessing": list(result.preprocessing),
                }
            )
            return
        named = "" if result.class_name == str(result.label) else f" (class {result.label})"
        console.print(
            f"{settings.tracking.registered_model} v{version}: predicted "
            f"[bold]{result.class_name}[/bold]{named} ({result.confidence:.1%})"
        )
        for note in result.preprocessing:
            console.print(f"note: {note}", highlight=False)
        table = new_table("explanations", "method", "overlay", "seconds", "completeness gap")
        for row in result.rows:
            gap = "" if row.completeness_gap is None else f"{row.completeness_gap:.2%}"
            table.add_row(row.method, str(row.overlay), f"{row.seconds:.3f}", gap)
        console.print(table)
        for name, value in result.quality.items():
            console.print(f"{name}: {value:.4g}")


@app.command()
def promote(
    model_ref: Annotated[
        str | None,
        typer.Option("--model", help="Version number or alias to judge (default: the newest)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a version against the champion on the frozen holdout; move aliases on a pass."""
    with user_errors():
        from clearsight.data import HoldoutStore

        settings = load_settings()
        assert settings.holdout_dir is not None
        store = HoldoutStore(settings.holdout_dir)
        if not store.exists():
            raise ConfigurationError(
                f"no frozen holdout in {settings.holdout_dir}; run a training first"
            )
        # Only now the heavy imports (TensorFlow): a refusal stays one line.
        import_keras()
        from clearsight.pipelines.promote import evaluate_and_promote
        from clearsight.tracking.registry import resolve_version

        version = resolve_version(settings, model_ref)[2] if model_ref else None
        with step("scoring challenger and champion on the frozen holdout"):
            decision = evaluate_and_promote(settings, store.load(), version)
        if decision.promoted:
            notify_service(settings, quiet=as_json)
        if as_json:
            print_json(decision.to_dict())
            return
        console.print(decision.to_markdown(), markup=False, highlight=False, soft_wrap=True)


@app.command()
def rollback(as_json: JsonOpt = False) -> None:
    """Make the previous champion the champion again (repeatable)."""
    with user_errors():
        from clearsight.tracking.registry import rollback as roll_back

        settings = load_settings()
        old, new = roll_back(settings)
        notify_service(settings, quiet=as_json)
        if as_json:
            print_json({"model": settings.tracking.registered_model, "from": old, "to": new})
            return
        console.print(
            f"{settings.tracking.registered_model}: champion v{old} -> v{new} (rolled back)"
        )


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """Show the registry's aliases and champion history."""
    with user_errors():
        from clearsight.tracking.registry import registry_state

        state = registry_state(load_settings())
        if as_json:
            print_json(state)
            return
        for key, value in state.items():
            console.print(f"{key}: {value}")
