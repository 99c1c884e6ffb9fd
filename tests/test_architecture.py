"""The layering rule of docs/architecture.md, checked on every import statement (lazy ones too).

The library (``src/clearsight``) never imports an orchestration or serving framework; the
layers that must stay free of MLflow do; and nothing in the repository reaches into a
third-party package's private modules, which can break on any minor release.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "src" / "clearsight"
FRAMEWORKS = {"prefect", "bentoml", "starlette", "fastapi", "_bentoml_sdk", "_bentoml_impl"}
# What each part of the library must not import, beyond the frameworks above.
MUST_NOT_IMPORT = {
    "data": {"mlflow"},
    "explain": {"mlflow"},
    "model": {"mlflow"},
    "reporting": {"mlflow"},
    "inference": {"mlflow"},
    "monitoring": {"mlflow"},
    "promotion.py": {"mlflow"},
    "config.py": {"mlflow", "keras"},
    "errors.py": {"mlflow", "keras", "pydantic"},
    "choices.py": {"mlflow", "keras", "pydantic"},
}
OWN_PACKAGES = {"clearsight", "serving", "flows", "tests", "benchmarks"}
SCANNED = ("src", "serving", "flows", "tests", "benchmarks")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def test_the_rule_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import bentoml\n    from prefect.tasks import task\n")
    assert {"bentoml", "prefect"} <= roots(imported_modules(sample))


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_library_imports_no_orchestration_or_serving_framework(path: Path) -> None:
    leaked = roots(imported_modules(path)) & FRAMEWORKS
    assert not leaked, f"{path.relative_to(REPO)} imports {sorted(leaked)}: move it to an adapter"


@pytest.mark.parametrize("part", sorted(MUST_NOT_IMPORT))
def test_each_layer_keeps_to_its_imports(part: str) -> None:
    target = LIBRARY / part
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files, f"no such part of the library: {part}"
    for path in files:
        leaked = roots(imported_modules(path)) & MUST_NOT_IMPORT[part]
        assert not leaked, f"{path.relative_to(REPO)} imports {sorted(leaked)}"


def test_nothing_imports_a_private_third_party_module() -> None:
    offenders = []
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(REPO).parts):
                continue  # hidden folders: the benchmark peers' virtual environments (.envs)
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[0] in OWN_PACKAGES or parts[0] == "__future__":
                    continue
                private = [p for p in parts if p.startswith("_") and not p.startswith("__")]
                if private:
                    offenders.append(f"{path.relative_to(REPO)}: {module}")
    assert not offenders, "private third-party modules imported:\n" + "\n".join(offenders)


def test_backend_libraries_are_imported_only_by_backend_adapters() -> None:
    """TensorFlow, JAX and PyTorch by name only in ``explain/backends`` and device detection."""
    allowed = {LIBRARY / "explain" / "backends", LIBRARY / "model"}
    for path in library_files():
        if any(path.is_relative_to(folder) for folder in allowed):
            continue
        leaked = roots(imported_modules(path)) & {"tensorflow", "jax", "torch"}
        assert not leaked, f"{path.relative_to(REPO)} imports {sorted(leaked)}"


ADAPTERS = {"flows", "serving"}


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_only_the_cli_composes_the_adapters(path: Path) -> None:
    """The command line is the composition root: it may drive ``flows`` and ``serving``;
    nothing else in the library imports an adapter or the CLI."""
    if path.is_relative_to(LIBRARY / "cli") or path == LIBRARY / "__main__.py":
        return
    modules = imported_modules(path)
    leaked = roots(modules) & ADAPTERS
    assert not leaked, f"{path.relative_to(REPO)} imports the adapter(s) {sorted(leaked)}"
    cli = sorted(m for m in modules if m == "clearsight.cli" or m.startswith("clearsight.cli."))
    assert not cli, f"{path.relative_to(REPO)} imports the CLI ({cli})"


def test_nothing_edits_the_import_path() -> None:
    """Adapters are packages of the distribution: no ``sys.path`` edits anywhere."""
    offenders = []
    for folder in ("src", "serving", "flows", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(REPO).parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr == "path"
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, "sys.path used in:\n" + "\n".join(offenders)
