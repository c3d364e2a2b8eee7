"""What the three experiments share, one floor per subpackage; imports only point down (docs/architecture.md).

    cli/      the command line: flags, the task registry, --task all, export          (top)
    run/      a run's folder: fit (the core plus resume, results, figures, commit)
    report/   what shows: the report, its documents, figures, TensorBoard, provenance
    data/     data sources: image folders, TFDS, .npz files, the decoded-array cache
    runtime/  the process and its files: output folders, locks, signals, the distributed start, checkpoints,
              XLA:CPU options
    core/     the pure training core: config, state, the jitted step, the loop; numerics   (bottom)

The core and the science (lenet/model.py, recurrent/cells.py, deconv/ops.py, ...) touch no file, lock, signal
or process state; tests/test_layers.py enforces the order.

The one thing this file does, for one release only: the module names from before the floors (`common.outputs`,
`common.train.loop`, ...) still import, as the same modules, with a DeprecationWarning (`MOVED`; docs/api.md).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# Old names (before the floors, 2026-12) -> new ones. They still import, with a DeprecationWarning, for one release
# (docs/api.md, "Changes"); remove this table and `_Moved` in the next one.
MOVED = {f"common.{old}": f"common.{new}" for old, new in {
    "config": "core.config", "errors": "core.errors", "stats": "core.stats", "train.batches": "core.batches",
    "train.state": "core.state", "train.step": "core.step", "train.loop": "core.loop", "train.history": "core.history",
    "train.fit": "run.fit", "train.resume": "run.resume", "train.results": "run.results",
    "outputs": "runtime.outputs", "locks": "runtime.locks", "interrupt": "runtime.interrupt",
    "distributed": "runtime.distributed", "xla_cpu": "runtime.xla_cpu", "host_memory": "runtime.host_memory",
    "compile_cache": "runtime.compile_cache", "checkpoint": "runtime.checkpoint", "tf_quiet": "runtime.tf_quiet",
    "image_folder": "data.image_folder", "dataset_file": "data.dataset_file", "data_cache": "data.cache",
    "document": "report.document", "plotting": "report.plotting", "tensorboard": "report.tensorboard",
    "provenance": "report.provenance", "run_all": "cli.run_all", "export_task": "cli.export_task"}.items()}
OLD_PACKAGE = "common.train"  # the old home of the core and the run; now an empty package of moved names


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name as the module at its new place (the same module object), with a DeprecationWarning."""

    def find_spec(self, name, path=None, target=None):
        if name == OLD_PACKAGE or name in MOVED:
            return importlib.util.spec_from_loader(name, self, is_package=name == OLD_PACKAGE)
        return None

    def create_module(self, spec):
        if spec.name == OLD_PACKAGE:
            return None  # an empty package: its names are found here one by one
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]} (docs/api.md, Changes); the old name will be "
                      "removed in the next release", DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _Moved) for f in sys.meta_path):
    sys.meta_path.append(_Moved())  # last: every real module is found first
