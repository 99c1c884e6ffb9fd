"""explain/ stays a library: no tracking, orchestration or serving imports, and the backend
code stays in backends/."""

import ast
from pathlib import Path

import clearsight.explain

PACKAGE = Path(clearsight.explain.__file__).parent
FORBIDDEN = {"mlflow", "prefect", "bentoml"}
BACKEND_LIBRARIES = {"tensorflow", "jax", "torch"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_tracking_orchestration_or_serving_imports():
    for path in PACKAGE.rglob("*.py"):
        assert not _imported_roots(path) & FORBIDDEN, path


def test_backend_libraries_are_imported_only_by_backend_modules():
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name != "backends":
            assert not _imported_roots(path) & BACKEND_LIBRARIES, path
