"""Serving: run the service, ask it, build a bento, tell it the champion moved.

BentoML is driven through the ``serving.bento_store`` adapter of the source checkout: the
library itself never imports a serving framework.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from clearsight.choices import CHAMPION
from clearsight.cli.app import app
from clearsight.cli.options import BentoOpt, HostOpt, ModelRefOpt, load_settings
from clearsight.cli.output import (
    JsonOpt,
    console,
    err_console,
    new_table,
    print_json,
    step,
    user_errors,
)

if TYPE_CHECKING:
    from clearsight.config import Settings


def bento_store() -> ModuleType:
    """The ``serving.bento_store`` adapter, imported when a command needs BentoML (the CLI is
    the composition root: it may drive the adapters, the library below it never does)."""
    from clearsight.cli.framework_noise import import_keras

    import_keras()  # BentoML's Keras support imports TensorFlow: its start-up lines filtered
    from serving import bento_store

    return bento_store


def notify_service(settings: Settings, *, quiet: bool = False) -> None:
    """Tell the service (``CLEARSIGHT_SERVICE_URL``) that the champion moved; it also notices
    by itself within its poll interval, so a failure here is only a warning."""
    from clearsight.errors import ServiceError
    from clearsight.inference.client import notify_reload

    try:
        answer = notify_reload(settings)
    except ServiceError as err:
        err_console.print(f"[yellow]warning:[/yellow] {err.one_line()}", highlight=False)
        return
    if answer and not quiet:
        console.print(answer)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on the host interface.")] = 3000,
    host: HostOpt = "127.0.0.1",
    model_ref: ModelRefOpt = CHAMPION,
    bento: BentoOpt = None,
) -> None:
    """Serve predictions and explanations over HTTP (BentoML); Ctrl-C stops it.

    Without --bento, the registry's model (the champion by default) is imported into the
    BentoML store first, the service runs from this checkout's serving/ and follows the alias:
    a promotion or rollback goes live without a restart.
    """
    with user_errors():
        settings = load_settings()
        store = bento_store()
        if bento:
            command = store.serve_command(bento, host=host, port=port)
            what = f"bento {bento}"
        else:
            from clearsight.access import admin_token

            admin_token(settings, create=True)  # the service and the local CLI share it
            with step(f"importing {model_ref} from the registry into BentoML"):
                imported = store.import_model(settings, model_ref)
            if not model_ref.isdigit():  # an alias: follow it as it moves (no restart)
                os.environ.setdefault("CLEARSIGHT_SERVING__FOLLOW_ALIAS", model_ref)
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
    images: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="PNG/JPEG images.")
    ],
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
    as_json: JsonOpt = False,
) -> None:
    """Ask a running service (clearsight serve) about image files; print what it says."""
    with user_errors():
        from clearsight.inference.client import predict_files, save_overlays

        answer = predict_files(url, images, explain=explain, api_key=api_key)
        written = save_overlays(answer, images, out) if explain and out is not None else []
        if as_json:
            print_json(answer)
            return
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
            name = result.get("class_name")
            if name and name != label:  # a model of named classes: say the name with the index
                label = f"{label} {name}"
            table.add_row(str(images[result["index"]]), status, label, confidence, explained)
        console.print(table)
        for result in answer["results"]:
            for note in result.get("preprocessing", []):
                console.print(f"note: {images[result['index']]}: {note}", highlight=False)
            for warning in result["warnings"]:
                console.print(f"[yellow]warning:[/yellow] {images[result['index']]}: {warning}")
        for path in written:
            console.print(f"overlay: {path}")


@app.command("build-service")
def build_service(
    model_ref: ModelRefOpt = CHAMPION,
    export: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained archive (bento + model) to this file."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the bento that serves the registry's champion (import it into BentoML first)."""
    with user_errors():
        settings = load_settings()
        store = bento_store()
        with step(f"building the bento of {model_ref}"):
            built = store.build_service(settings, model_ref)
            exported = store.export_service(built.bento_tag, export) if export else None
        if as_json:
            print_json(
                {
                    "bento": built.bento_tag,
                    "model": built.model_tag,
                    "path": built.path,
                    "run_id": built.provenance.run_id,
                    "exported": exported,
                }
            )
            return
        console.print(
            f"[green]bento {built.bento_tag}[/green] serves {built.model_tag} "
            f"(run {built.provenance.run_id})"
        )
        console.print(f"bento folder: {built.path}")
        if exported is not None:
            console.print(f"exported (bento + model): {exported}")
        console.print(f"serve it: [bold]clearsight serve --bento {built.bento_tag}[/bold]")
