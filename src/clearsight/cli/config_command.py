"""``clearsight config``: the effective settings, and where each value came from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clearsight.cli.app import app
from clearsight.cli.output import JsonOpt, console, new_table, print_json, user_errors


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"seed": 42}}`` -> ``{"data.seed": 42}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def origin(name: str, toml_values: dict[str, Any], toml_file: Path) -> str:
    """Where a setting's value came from, in the order ``Settings`` reads its sources."""
    variable = "CLEARSIGHT_" + name.upper().replace(".", "__")
    if variable in os.environ:
        return f"env {variable}"
    if name in toml_values:
        return str(toml_file)
    return "default"


@app.command()
def config(as_json: JsonOpt = False) -> None:
    """The effective settings and where each came from (environment, TOML file, default)."""
    with user_errors():
        import tomllib

        from clearsight.cli.options import load_settings

        settings = load_settings()
        toml_file = Path(os.environ.get("CLEARSIGHT_CONFIG", "clearsight.toml"))
        toml_values = flatten(tomllib.loads(toml_file.read_text())) if toml_file.is_file() else {}
        values = flatten(settings.model_dump(mode="json"))
        rows = {
            name: {"value": v, "from": origin(name, toml_values, toml_file)}
            for name, v in values.items()
        }
        if as_json:
            print_json(rows)
            return
        table = new_table("clearsight settings", "setting", "value", "from")
        for name, row in rows.items():
            table.add_row(name, str(row["value"]), row["from"])
        console.print(table)
        console.print(
            "environment: CLEARSIGHT_<SECTION>__<NAME>; file: clearsight.toml or CLEARSIGHT_CONFIG"
        )
