"""The modules a run enters before its first training step, in order, with the floor of each.

    python tools/first_step_path.py            (from the repository root; about 20 s on a CPU)

Traces two entries with `sys.setprofile` until the first compiled training call (`common.core.step`'s jitted
program, called from `loop.run_epoch`): `lenet.train.train_and_evaluate` on a small generated image folder (a
library user's path, data loading included) and `common.core.loop.train_models` on generated arrays (the pure
core's path). Prints the project files entered, their lines, how often the trace switched between files, and each
file's floor (tools/floor_lines.py's groups).
"""
from __future__ import annotations

import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import numpy as np  # noqa: E402
from floor_lines import group_of  # noqa: E402


class FirstStep(Exception):
    pass


def trace(entry) -> tuple[list[str], int]:
    """(project files in the order first entered, switches between project files) until the first step."""
    order, switches, last = [], 0, None

    def profile(frame, event, arg):
        nonlocal switches, last
        if event != "call":
            return
        path = frame.f_code.co_filename
        if not path.startswith(str(ROOT)) or "/tools/" in path or "/.venv" in path:
            return
        rel = os.path.relpath(path, ROOT)
        if rel not in order:
            order.append(rel)
        if rel != last:
            switches += last is not None
            last = rel
        if rel == "common/core/loop.py" and frame.f_code.co_name == "run_epoch":
            raise FirstStep  # run_epoch's first act is the first training call

    sys.setprofile(profile)
    try:
        entry()
    except FirstStep:
        pass
    finally:
        sys.setprofile(None)
    return order, switches


def image_folder(root: str) -> str:
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("Train", 6), ("Test", 2)):
        for label in range(10):
            os.makedirs(f"{root}/{split}/{label}")
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(f"{root}/{split}/{label}/{i}.png")
    return root


def report(title: str, order: list[str], switches: int) -> None:
    total = sum(len((ROOT / f).read_text().splitlines()) for f in order)
    print(f"\n{title}: {len(order)} project modules, {total:,} lines, {switches} switches between files")
    for f in order:
        group, floor = group_of(f)
        print(f"  {f:34s} {len((ROOT / f).read_text().splitlines()):5d}  {group} ({floor})")


def main() -> None:
    os.environ.setdefault("ELEC576_JAX_CACHE", "off")
    with tempfile.TemporaryDirectory() as tmp:
        data = image_folder(os.path.join(tmp, "data"))
        from lenet.config import LeNetConfig
        from lenet.train import train_and_evaluate
        config = LeNetConfig.create(epochs=1, hidden=16, data_dir=data, val_fraction=0.1)
        report("lenet.train.train_and_evaluate",
               *trace(lambda: train_and_evaluate(config, os.path.join(tmp, "out"), progress=False)))

        from common.core import loop
        from common.core.config import TrainConfig
        from common.data import Dataset, Split
        from lenet.model import create_model
        rng = np.random.default_rng(0)
        split = lambda n: Split(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),  # noqa: E731
                                (np.arange(n) % 10).astype(np.int32))
        arrays = Dataset(split(100), split(20), split(20), tuple(str(i) for i in range(10)), "generated")
        report("common.core.loop.train_models",
               *trace(lambda: loop.train_models(create_model(config), arrays, TrainConfig(batch_size=50, epochs=1))))


if __name__ == "__main__":
    main()
