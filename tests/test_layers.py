"""The floors (docs/architecture.md): imports only point down.

1. `common/` is one subpackage per floor, bottom to top: core, runtime, data, report, run, cli. A module imports
   only from its own floor or the floors below it (subfolders included).
2. The science (models, cells, deconv ops) and the pure training core (`common/core/`) import nothing above them:
   no data source, output folder, lock, signal, cache, CLI or report module, directly or through another module.
3. Nothing under common/ imports an experiment package.
4. The module that defines the training step imports at most six project modules, all on the lower floors.
The checker itself is tested on planted upward imports, so that it cannot pass by looking at nothing.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT_PACKAGES = {"lenet", "recurrent", "deconv"}
PROJECT_PACKAGES = EXPERIMENT_PACKAGES | {"common"}
# common's floors, bottom to top; `common.fit` (a deprecated forwarder kept for one release) sits on top.
FLOORS = ("core", "runtime", "data", "report", "run", "cli")
TOP = len(FLOORS)
SCIENCE = {"lenet", "lenet.model", "lenet.config", "recurrent", "recurrent.cells", "recurrent.model",
           "recurrent.optimized", "recurrent.config", "deconv", "deconv.ops", "deconv.network", "deconv.occlusion"}
LOWER_FLOOR = "common.core"  # with SCIENCE: what a student reads top to bottom
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


def floor(module: str) -> int | None:
    """The floor of a module under common/ (0 = core), None outside common/; `common` itself is the bottom."""
    parts = module.split(".")
    if parts[0] != "common":
        return None
    if len(parts) == 1:
        return 0
    return FLOORS.index(parts[1]) if parts[1] in FLOORS else TOP


def lower(graph: dict[str, set[str]]) -> set[str]:
    """The lower floors: the core's modules and the science's."""
    return {m for m in graph if m == "common" or m == LOWER_FLOOR or m.startswith(LOWER_FLOOR + ".")} | SCIENCE


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each common module importing a floor above its own, each lower-floor module whose import closure leaves
    the lower floors, and each common module that imports an experiment."""
    bad = [f"{m} (floor {FLOORS[floor(m)] if floor(m) < TOP else 'top'}) imports {i}" for m in sorted(graph)
           if floor(m) is not None for i in sorted(graph[m]) if floor(i) is not None and floor(i) > floor(m)]
    low = lower(graph)
    bad += [f"{m} reaches {', '.join(sorted(closure(graph, m) - low))}" for m in sorted(low & graph.keys())
            if closure(graph, m) - low]
    bad += [f"{m} imports {', '.join(sorted(i for i in graph[m] if i.split('.')[0] in EXPERIMENT_PACKAGES))}"
            for m in sorted(graph) if m.split(".")[0] == "common"
            and any(i.split(".")[0] in EXPERIMENT_PACKAGES for i in graph[m])]
    return bad


def test_imports_only_point_down():
    graph = project_graph()
    assert SCIENCE <= graph.keys(), f"the science list names missing modules: {sorted(SCIENCE - graph.keys())}"
    floors = {m.split(".")[1] for m in graph if m.count(".") >= 1 and m.startswith("common.")}
    assert set(FLOORS) <= floors, f"floors without a package: {sorted(set(FLOORS) - floors)}"
    assert floors - set(FLOORS) <= {"fit"}, f"modules of common/ outside the floors: {sorted(floors - set(FLOORS))}"
    assert not violations(graph)


def test_the_training_step_imports_little():
    graph = project_graph()
    reached = closure(graph, "common.core.step")
    assert len(reached - {"common", LOWER_FLOOR}) <= MAX_STEP_CLOSURE, sorted(reached)
    assert reached <= lower(graph)


PLANTED = {  # file: the upward import planted in it
    "common/core/step.py": "from common.runtime import outputs\n",
    "common/core/sub/deep.py": "from common.runtime import outputs\n",
    "common/runtime/outputs.py": "from common.report import document\n",  # one floor up
    "common/data/cache.py": "from common.cli import run_all\n",
    "common/cli/run_all.py": "from lenet import task\n",  # the top of common still imports no experiment
    "lenet/model.py": "from common.data import image_folder\n",  # the science reaching a data source
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
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
    upward = PLANTED[planted]
    target.write_text((target.read_text() if target.exists() else "") + upward)
    graph = project_graph(tmp_path)
    if planted == "common/core/sub/deep.py":  # reached once the core imports it
        graph["common.core.step"].add("common.core.sub.deep")
    assert violations(graph), f"a planted '{upward.strip()}' in {planted} went unnoticed"
