"""The floors (docs/architecture.md): imports only point down.

1. The science (models, cells, deconv ops) and the pure training core import nothing above them: no data
   source, output folder, lock, signal, cache, CLI or report module, directly or through another module.
2. Nothing under common/ (subfolders included) imports an experiment package.
3. The module that defines the training step imports at most six project modules, all on the lower floors.
The checker itself is tested on a planted upward import, so that it cannot pass by looking at nothing.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT_PACKAGES = {"lenet", "recurrent", "deconv"}
PROJECT_PACKAGES = EXPERIMENT_PACKAGES | {"common"}
# The lower floors: what a student reads top to bottom. Everything else in the project is machinery or report.
CORE = {"common", "common.config", "common.errors", "common.train", "common.train.batches", "common.train.state",
        "common.train.step", "common.train.loop"}
SCIENCE = {"lenet", "lenet.model", "lenet.config", "recurrent", "recurrent.cells", "recurrent.model",
           "recurrent.optimized", "recurrent.config", "deconv", "deconv.ops", "deconv.network", "deconv.occlusion"}
LOWER = CORE | SCIENCE
MAX_STEP_CLOSURE = 6


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every absolute module a file imports, at any depth (function-level imports included); `from a import b`
    counts as a.b when a.b is a module of the project, else as a."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_graph(root: pathlib.Path = ROOT) -> dict[str, set[str]]:
    """{project module: the project modules it imports} over every package, subfolders included."""
    files = [p for pkg in PROJECT_PACKAGES for p in (root / pkg).rglob("*.py")]
    modules = {module_name(p, root): p for p in files}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imported_modules(path) if m in modules}
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        graph[name] |= {".".join(m.split(".")[:i]) for m in graph[name] for i in range(1, m.count(".") + 1)}
    return graph


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in graph.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen - {start}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each lower-floor module whose import closure leaves the lower floors, and each common module that
    imports an experiment."""
    bad = [f"{m} reaches {', '.join(sorted(closure(graph, m) - LOWER))}" for m in sorted(LOWER & graph.keys())
           if closure(graph, m) - LOWER]
    bad += [f"{m} imports {', '.join(sorted(i for i in graph[m] if i.split('.')[0] in EXPERIMENT_PACKAGES))}"
            for m in sorted(graph) if m.split(".")[0] == "common"
            and any(i.split(".")[0] in EXPERIMENT_PACKAGES for i in graph[m])]
    return bad


def test_imports_only_point_down():
    graph = project_graph()
    assert LOWER <= graph.keys(), f"floor lists name missing modules: {sorted(LOWER - graph.keys())}"
    assert not violations(graph)


def test_the_training_step_imports_little():
    reached = closure(project_graph(), "common.train.step")
    assert len(reached - {"common", "common.train"}) <= MAX_STEP_CLOSURE, sorted(reached)
    assert reached <= LOWER


@pytest.mark.parametrize("planted", ["common/train/step.py", "common/train/sub/deep.py", "common/outputs.py"])
def test_the_check_catches_a_planted_upward_import(tmp_path, planted):
    """A copy of the tree with one bad import added: the check must fail (subfolders included)."""
    for pkg in PROJECT_PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            target = tmp_path / p.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(p.read_text())
    target = tmp_path / planted
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / "__init__.py").touch()
    upward = "from lenet import task\n" if planted == "common/outputs.py" else "from common import outputs\n"
    target.write_text((target.read_text() if target.exists() else "") + upward)
    graph = project_graph(tmp_path)
    if planted == "common/train/sub/deep.py":  # reached once the core imports it
        graph["common.train.step"].add("common.train.sub.deep")
    assert violations(graph), f"a planted '{upward.strip()}' in {planted} went unnoticed"
