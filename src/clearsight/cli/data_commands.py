"""``clearsight data``: what a source holds, whether it passes the contract, the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from clearsight.cli.app import data_app
from clearsight.cli.options import (
    ChannelsOpt,
    DigitRulesOpt,
    HeightOpt,
    PathOpt,
    ResizeOpt,
    SourceOpt,
    WidthOpt,
    load_settings,
)
from clearsight.cli.output import (
    JsonOpt,
    console,
    new_table,
    print_json,
    print_report,
    step,
    user_errors,
)


@data_app.command("describe")
def data_describe(
    source: SourceOpt = None,
    path: PathOpt = None,
    folder_resize: ResizeOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    channels: ChannelsOpt = None,
    digit_rules: DigitRulesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a source holds and how it splits (no validation)."""
    with user_errors():
        import numpy as np

        from clearsight.data import HoldoutStore, load, make_splits
        from clearsight.data.sources import expected_task

        settings = load_settings(
            source=source,
            path=path,
            folder_resize=folder_resize,
            image_height=height,
            image_width=width,
            image_channels=channels,
            digit_rules=digit_rules,
        )
        assert settings.holdout_dir is not None
        with step(f"reading the {settings.data.source} source"):
            dataset = load(settings.data)
            task = expected_task(settings.data, dataset)
            splits = make_splits(dataset, settings.data, HoldoutStore(settings.holdout_dir))
        n_classes = task.n_classes
        per_split: dict[str, dict[str, Any]] = {  # also printed as JSON
            name: {
                "images": len(ds),
                "per_class": np.bincount(ds.labels[ds.labels >= 0], minlength=n_classes).tolist(),
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
                    "task": task.to_metadata(),
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
        names = ", ".join(task.class_names)
        rules = "digit rules on" if task.digit_like else "digit rules off"
        console.print(f"task: {task.describe()} ({names}); {rules}", markup=False)
        table = new_table("splits", "split", "images", "per class", "sha256")
        for name, row in per_split.items():
            counts = " ".join(map(str, row["per_class"]))
            table.add_row(name, str(row["images"]), counts, row["sha256"][:16])
        console.print(table)
        frozen = "frozen (reused)" if splits.holdout_frozen else "new (frozen after validation)"
        console.print(f"holdout: {frozen} in {settings.holdout_dir}")


@data_app.command("validate")
def data_validate(
    source: SourceOpt = None,
    path: PathOpt = None,
    folder_resize: ResizeOpt = None,
    freeze: Annotated[
        bool,
        typer.Option(
            "--freeze/--no-freeze",
            help="Freeze the holdout when the data passes and none is frozen yet; "
            "--no-freeze checks a candidate source and writes no holdout.",
        ),
    ] = True,
    height: HeightOpt = None,
    width: WidthOpt = None,
    channels: ChannelsOpt = None,
    digit_rules: DigitRulesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a source against the data contract; exit 1 listing failed expectations."""
    with user_errors():
        from clearsight.data.gate import run_data_gate

        settings = load_settings(
            source=source,
            path=path,
            folder_resize=folder_resize,
            image_height=height,
            image_width=width,
            image_channels=channels,
            digit_rules=digit_rules,
        )
        with step("checking the data contract (Great Expectations)"):
            gated = run_data_gate(settings, freeze_holdout=freeze)
        if as_json:
            print_json(gated.report.to_dict())
            return
        print_report(gated.report)
        console.print("[green]data contract passed[/green]")


@data_app.command("reference")
def data_reference(
    source: SourceOpt = None,
    path: PathOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    channels: ChannelsOpt = None,
) -> None:
    """Rewrite the reference profile that drift checks compare against, from a source (the
    digits' in the contract folder, any other dataset's beside its data versions)."""
    with user_errors():
        import json

        from clearsight.data import HoldoutStore, load, make_splits, profile_splits
        from clearsight.data.contract import build_reference, reference_path
        from clearsight.data.contract import uses_shipped_reference as digits_reference
        from clearsight.data.sources import expected_task

        settings = load_settings(
            source=source,
            path=path,
            image_height=height,
            image_width=width,
            image_channels=channels,
        )
        assert settings.holdout_dir is not None
        with step("profiling the source"):
            dataset = load(settings.data)
            task = expected_task(settings.data, dataset)
            splits = make_splits(dataset, settings.data, HoldoutStore(settings.holdout_dir))
            reference = build_reference(profile_splits(splits), dataset.origin)
        if digits_reference(task):
            target = settings.reference_profile_target
        else:
            target = reference_path(settings, task)
            reference |= {"task": task.to_metadata()}
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(reference, indent=2) + "\n")
        console.print(f"reference profile of {len(dataset)} images written to {target}")


@data_app.command("versions")
def data_versions(as_json: JsonOpt = False) -> None:
    """List the data versions: each base source and every accepted batch on top of it."""
    with user_errors():
        from clearsight.data.versions import VersionStore

        settings = load_settings()
        store = VersionStore.of(settings)
        versions = store.versions()
        heads = set(store.pointers().values())
        if as_json:
            print_json([v.to_dict() | {"newest": v.id in heads} for v in versions])
            return
        if not versions:
            console.print(f"no data versions yet in {settings.versions_dir}: train once first")
            return
        table = new_table(
            f"data versions in {settings.versions_dir}",
            "id",
            "parent",
            "images",
            "per class",
            "batch",
            "base",
            "sha256",
        )
        for v in versions:
            counts = " ".join(
                str(n) if name == str(i) else f"{name}={n}"
                for i, (name, n) in enumerate(v.per_class())
            )
            batch = f"{v.batch.name} (+{v.batch.n_images})" if v.batch else "-"
            base = f"{v.base.source}{f': {v.base.path}' if v.base.path else ''}"
            newest = " (newest)" if v.id in heads else ""
            table.add_row(
                v.id + newest,
                v.parent or "-",
                str(v.n_images),
                counts,
                batch,
                base,
                v.digest[:12],
            )
        console.print(table)


BatchArg = Annotated[str, typer.Argument(help="A quarantined batch's name (see data review).")]
ByOpt = Annotated[
    str | None, typer.Option("--by", help="Who decides (default: login name and host).")
]


@data_app.command("review")
def data_review(as_json: JsonOpt = False) -> None:
    """List quarantined batches: why each was stopped, and its report and label grid."""
    with user_errors():
        from clearsight.data.review import quarantined

        settings = load_settings()
        entries = quarantined(settings)
        if as_json:
            print_json([e.to_dict() for e in entries])
            return
        if not entries:
            console.print(f"no quarantined batches in {settings.quarantine_dir}")
            return
        table = new_table(
            f"quarantined batches in {settings.quarantine_dir}",
            "batch",
            "images",
            "quarantined",
            "reason",
            "label grid",
        )
        for e in entries:
            figure = e.figure.name if e.figure else "-"
            table.add_row(e.name, str(e.n_images), e.quarantined_at, e.reason, figure)
        console.print(table)


@data_app.command("accept")
def data_accept(batch: BatchArg, by: ByOpt = None) -> None:
    """Send a quarantined batch back for ingest, its label check overridden (recorded)."""
    with user_errors():
        from clearsight.data.review import accept

        console.print(accept(load_settings(), batch, by), highlight=False)


@data_app.command("reject")
def data_reject(batch: BatchArg, by: ByOpt = None) -> None:
    """Delete a quarantined batch and its reports (recorded in reviews.jsonl)."""
    with user_errors():
        from clearsight.data.review import reject

        console.print(reject(load_settings(), batch, by), highlight=False)


@data_app.command("export")
def data_export(
    folder: Annotated[Path, typer.Argument(help="A new (or empty) folder to write into.")],
    words: Annotated[
        bool, typer.Option("--words/--digits", help="Name the class folders zero..nine.")
    ] = True,
    size: Annotated[
        int | None, typer.Option(min=1, help="Resize every image to SIZE x SIZE.")
    ] = None,
) -> None:
    """Write the embedded digits as a class-folder tree (one subfolder per class, PNG files):
    the layout `--source folder` reads, to try it with data you already have."""
    with user_errors():
        from clearsight.data.class_folders import DIGIT_WORDS, write_class_folders
        from clearsight.data.sources import load_embedded

        with step("writing PNG files"):
            counts = write_class_folders(
                load_embedded(), folder, DIGIT_WORDS if words else None, size
            )
        console.print(
            f"{sum(counts.values())} images in {len(counts)} class folders under {folder}",
            markup=False,
        )
