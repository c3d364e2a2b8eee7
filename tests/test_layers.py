"""common/ is a library: it imports nothing from the experiment packages that build on it."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT_PACKAGES = {"lenet", "recurrent", "deconv"}


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every absolute module a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "common").glob("*.py")), ids=lambda p: p.name)
def test_common_imports_no_experiment_package(path):
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in EXPERIMENT_PACKAGES)
    assert not bad, f"common/{path.name} imports {', '.join(bad)}"
