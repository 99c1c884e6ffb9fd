"""The layering rule of docs/architecture.md, checked on every import statement (lazy ones too).

The library (``src/clearsight``) never imports an orchestration or serving framework; the
layers that must stay free of MLflow do, directly and through any other module of the library
(monitoring -> tracking -> mlflow breaks the rule as surely as ``import mlflow``); only
``tracking/`` names MLflow; nothing in the library loads a module by a string name, so this
import graph is the whole graph; and nothing in the repository reaches into a third-party
package's private modules, which can break on any minor release.
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
    "retrain_policy.py": {"mlflow", "keras"},
    "config.py": {"mlflow", "keras"},
    "errors.py": {"mlflow", "keras", "pydantic"},
    "choices.py": {"mlflow", "keras", "pydantic"},
    "mlflow_links.py": {"mlflow", "keras", "pydantic"},
    "quality_metrics.py": {"mlflow", "keras", "pydantic"},
}
# The one part of the library that imports MLflow by name; the use cases (``pipelines/``) and
# the CLI reach it through ``tracking``.
MLFLOW_OWNER = LIBRARY / "tracking"
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


# -- the library's own import graph ----------------------------------------------------------
def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIBRARY.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    """The file of a ``clearsight...`` module (a module or a package), None for an attribute."""
    base = LIBRARY.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def internal_imports(path: Path) -> set[Path]:
    """The library files that importing ``path`` (or calling any of its functions) loads:
    every ``clearsight`` module it names and the packages above them."""
    files = set()
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[0] != "clearsight":
            continue
        for depth in range(1, len(parts) + 1):
            found = module_path(".".join(parts[:depth]))
            if found is not None:
                files.add(found)
    return files - {path}


def reaches(start: Path, forbidden: set[str]) -> list[str] | None:
    """The import chain from ``start`` to a module whose root is in ``forbidden``, or None."""
    chain = {start: [module_name(start)]}
    queue = [start]
    while queue:
        path = queue.pop(0)
        leaked = sorted(roots(imported_modules(path)) & forbidden)
        if leaked:
            return [*chain[path], leaked[0]]
        for nxt in sorted(internal_imports(path)):
            if nxt not in chain:
                chain[nxt] = [*chain[path], module_name(nxt)]
                queue.append(nxt)
    return None


def part_files(part: str) -> list[Path]:
    target = LIBRARY / part
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


def test_the_graph_follows_imports_through_other_modules(tmp_path: Path, monkeypatch) -> None:
    """A layer that reaches MLflow only through another module is caught, with the chain."""
    package = tmp_path / "clearsight"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "check.py").write_text("def f():\n    from clearsight.mid import g\n")
    (package / "mid.py").write_text("from clearsight import bottom\n")
    (package / "bottom.py").write_text("import mlflow.tracking\n")
    monkeypatch.setattr(f"{__name__}.LIBRARY", package)
    chain = reaches(package / "low" / "check.py", {"mlflow"})
    assert chain == ["clearsight.low.check", "clearsight.mid", "clearsight.bottom", "mlflow"]
    assert reaches(package / "low" / "__init__.py", {"mlflow"}) is None


@pytest.mark.parametrize("part", sorted(MUST_NOT_IMPORT))
def test_no_layer_reaches_a_forbidden_import_through_another_module(part: str) -> None:
    """The same rule as above, over everything each file of the part loads, lazily or not."""
    for path in part_files(part):
        chain = reaches(path, MUST_NOT_IMPORT[part] | FRAMEWORKS)
        assert chain is None, f"{path.relative_to(REPO)} reaches {chain[-1]}: {' -> '.join(chain)}"


def test_only_tracking_imports_mlflow_by_name() -> None:
    """The use cases and the CLI hand MLflow's work to ``tracking``, never call it themselves."""
    offenders = [
        str(path.relative_to(REPO))
        for path in library_files()
        if not path.is_relative_to(MLFLOW_OWNER) and "mlflow" in roots(imported_modules(path))
    ]
    assert not offenders, f"import mlflow outside tracking/: {offenders}"


# -- no module loaded by a string name -------------------------------------------------------
DYNAMIC_LOADERS = {"import_module", "__import__", "module_from_spec", "spec_from_file_location"}


def dynamic_loads(path: Path, root: Path = REPO) -> list[str]:
    """Calls that load a module by a string (``importlib.import_module(...)``,
    ``__import__(...)``), and imports of those loaders or of ``runpy``: the graph above cannot
    see what they load."""
    where = path.relative_to(root)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in DYNAMIC_LOADERS:
                found.append((node.lineno, f"{where}:{node.lineno}: {name}(...)"))
        elif isinstance(node, ast.ImportFrom) and node.module in {"importlib", "importlib.util"}:
            found += [
                (node.lineno, f"{where}:{node.lineno}: imports {alias.name}")
                for alias in node.names
                if alias.name in DYNAMIC_LOADERS
            ]
        elif isinstance(node, ast.Import) and "runpy" in roots({a.name for a in node.names}):
            found.append((node.lineno, f"{where}:{node.lineno}: imports runpy"))
    return [line for _, line in sorted(found)]


def test_the_loader_check_sees_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import importlib\nfrom importlib import import_module\nimport runpy\n"
        "def f(name):\n    importlib.import_module(name)\n    return __import__(name)\n"
    )
    assert dynamic_loads(sample, tmp_path) == [
        "sample.py:2: imports import_module",
        "sample.py:3: imports runpy",
        "sample.py:5: import_module(...)",
        "sample.py:6: __import__(...)",
    ]


def test_nothing_in_the_library_loads_a_module_by_a_string_name() -> None:
    """Every module the library uses is named in an import statement, so the import graph the
    tests above check is complete (``importlib.metadata`` and ``find_spec`` only look)."""
    found = [line for path in library_files() for line in dynamic_loads(path)]
    assert not found, "modules loaded by a string name:\n" + "\n".join(found)


# -- method names spelled once ---------------------------------------------------------------
def test_method_names_are_spelled_only_in_choices() -> None:
    """``"integrated_gradients"`` and its siblings as string literals only in ``choices.py``
    (``__all__`` lists name functions, ``packages.py`` names distributions)."""
    from clearsight.choices import METHOD_NAMES

    exempt = {LIBRARY / "choices.py", LIBRARY / "packages.py"}
    files = [p for p in library_files() if p not in exempt]
    files += sorted((REPO / "serving").glob("*.py")) + sorted((REPO / "flows").glob("*.py"))
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        listed = {
            id(element)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for element in ast.walk(node.value)
        }
        offenders += [
            f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and node.value in METHOD_NAMES
            and id(node) not in listed
        ]
    assert not offenders, "use the constants of clearsight.choices:\n" + "\n".join(offenders)
