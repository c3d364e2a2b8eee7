"""The command line: one parser for every task; each task module exposes `run(args) -> exit code`.

Flags left unset stay None, so the experiment's config dataclass keeps its defaults (the report's values):
the CLI only overrides fields, it never holds a second copy of a hyperparameter.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys

from common import host_memory
from common.errors import TrainingDiverged, UserError

# task -> (module with run(args), one-line help)
TASKS = {
    "lenet": ("lenet.experiment", "train LeNet5 on CIFAR10 with the report's settings (Part 1b, Figure 1)"),
    "visualize": ("lenet.visualize", "conv1 filters, activation statistics, feature maps (Part 1c, Figures 2-3)"),
    "deconv": ("deconv.experiment", "Zeiler & Fergus deconvnet: top-9 activations projected to pixels (Part 2)"),
    "rnn": ("recurrent.train", "RNN/LSTM/GRU on MNIST rows, hidden-size sweeps (Part 3a-3b)"),
    "compare": ("recurrent.compare", "LeNet5 vs the best recurrent net on the same MNIST splits (Part 3c)"),
    "report": ("common.report", "gather every result into report.html and REPORT.md"),
    "all": ("common.run_all", "run every task in order, then the report (--quick for a shrunk version)"),
}
CELLS = ("rnn", "lstm", "gru")


def _number(cast, ok, expected: str, must: str):
    """An argparse type: `cast(text)`, rejected with one line unless `ok(value)`."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {must}, got {text}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer", "a positive integer")
_nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0", ">= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number", "positive")
_nonneg_float = _number(float, lambda v: v >= 0, "a number >= 0", ">= 0")


def _scalar_or_list(item_type):
    """One value, or a tuple of several (a hyperparameter swept as a vmapped model axis)."""

    def parse(text: str):
        values = _comma_list(item_type)(text)
        return values[0] if len(values) == 1 else values

    return parse


def _comma_list(item_type, allowed=None):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected one value or a comma-separated list")
        values = [item_type(t) for t in items]
        if allowed is not None:
            bad = [v for v in values if v not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown value {bad[0]!r}; choose from {', '.join(allowed)}")
        return tuple(values)

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="ELEC 576 Assignment 2 in JAX/Flax. Tasks:\n"
        + "\n".join(f"  {name:<10} {text}" for name, (_, text) in TASKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, choices=list(TASKS), metavar="TASK",
                        help="one of: " + ", ".join(TASKS))
    parser.add_argument("--out", help="output folder (default: results/<task>)")
    g = parser.add_argument_group("training (defaults: the report's values)")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--batch-size", type=_positive_int)
    g.add_argument("--lr", type=_scalar_or_list(_positive_float),
                   help="learning rate, or a comma list (e.g. 1e-4,1.7e-4,3e-4) trained at once with jax.vmap")
    g.add_argument("--conv-l2", type=_scalar_or_list(_nonneg_float), metavar="W[,W..]",
                   help="LeNet5 conv-kernel L2 weight(s); a list trains one model per value, vmapped")
    g.add_argument("--fc-l2", type=_scalar_or_list(_nonneg_float), metavar="W[,W..]",
                   help="LeNet5 fc1-kernel L2 weight(s); a list trains one model per value, vmapped")
    g.add_argument("--seed", type=_nonneg_int, help="seed of initialisation, dropout and batch order")
    g.add_argument("--seeds", type=_positive_int, help="train N seeds (seed, seed+1, ...) at once with jax.vmap")
    g.add_argument("--steps-per-call", type=_positive_int,
                   help="training steps per compiled call, run as one lax.scan (default: 1 LeNet5, 50 recurrent)")
    g.add_argument("--limit", type=_positive_int, help="train on the first N training examples (smoke runs)")
    g.add_argument("--no-batchnorm", dest="use_batchnorm", action="store_const", const=False,
                   help="LeNet5 without batch norm")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    d = parser.add_argument_group("data")
    d.add_argument("--data-dir", help="image folder in the course layout PATH/{Train,Test}/<label>/*.png "
                   "(e.g. ../shared/data/elec576/CIFAR10) instead of the TFDS dataset")
    d.add_argument("--tfds-data-dir", help="TFDS data folder (default: $TFDS_DATA_DIR)")
    d.add_argument("--image-mode", choices=("gray28", "rgb32"),
                   help="gray28: 28x28 grayscale as the course did (default); rgb32: CIFAR10's 32x32 colour")
    v = parser.add_argument_group("visualize / deconv")
    v.add_argument("--checkpoint", help="folder written by --task lenet (default: results/lenet)")
    v.add_argument("--train-if-missing", action="store_true", help="train the checkpoint when there is none")
    v.add_argument("--compare-batchnorm", action="store_true", help="also train/load LeNet5 without batch norm")
    v.add_argument("--layer", type=_comma_list(str, ("conv1", "conv2")), help="conv layer(s) to project")
    v.add_argument("--filters", type=_comma_list(_nonneg_int), help="filter indices (default: all)")
    v.add_argument("--top-k", type=_positive_int, help="top activations per filter (default 9)")
    v.add_argument("--split", choices=("val", "test"), help="split searched for top activations")
    v.add_argument("--mode", choices=("deconvnet", "guided", "backprop"), help="backward rectification rule")
    v.add_argument("--bn", choices=("transpose", "inverse"),
                   help="batch norm on the way down: multiply by its scale (transpose, default) or divide")
    r = parser.add_argument_group("recurrent")
    r.add_argument("--cell", type=_comma_list(str, CELLS), help="rnn, lstm, gru or a comma list")
    r.add_argument("--hidden", type=_comma_list(_positive_int), help="hidden size(s), e.g. 16,32,64,128")
    a = parser.add_argument_group("all")
    a.add_argument("--quick", action="store_true", help="shrunk settings that finish in minutes on a laptop")
    return parser


def config_from_args(config_cls, args: argparse.Namespace, **overrides):
    """The config's defaults, overridden by every flag the user set (same names as the fields)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_cls(**values)


def default_out(args: argparse.Namespace) -> str:
    return args.out or os.path.join("results", args.task)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    module_name, _ = TASKS[args.task]
    host_memory.retain_freed_memory()
    try:
        module = importlib.import_module(module_name)
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; earlier results are unchanged", file=sys.stderr)
        return 130
