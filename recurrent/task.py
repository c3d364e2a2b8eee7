"""The recurrent package's tasks: `--task rnn` (Part 3a-3b) and `--task compare` (Part 3c).

Each declares its flags, its run and its place in `--task all`; the work is in recurrent/train.py and
recurrent/compare.py, the report sections in recurrent/report.py.
"""
from __future__ import annotations

import argparse
import itertools

from common import cli
from common.core.errors import UserError
from recurrent import compare
from recurrent.config import CELLS, RNNConfig
from recurrent.report import COMPARE_SECTION, RNN_SECTION
from recurrent.train import sweep


def add_cell_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    r = parser.add_argument_group("recurrent net")
    r.add_argument("--cell", type=cli.comma_list(str, CELLS), help=f"{', '.join(CELLS)} {what}")
    r.add_argument("--hidden", type=cli.comma_list(cli.positive_int), help=f"hidden size {what}")


def add_mnist_argument(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("MNIST source")
    g.add_argument("--mnist", metavar="PATH", help="the MNIST source, a folder or a .npz: what --data-dir is "
                   "alone; in --task all (whose --data-dir is the CIFAR10 source) the rnn and compare tasks' one")


def with_mnist(run):
    """`run` with --mnist PATH taken as --data-dir PATH."""

    def run_with_mnist(args) -> int:
        if getattr(args, "mnist", None):
            if args.data_dir and args.data_dir != args.mnist:
                raise UserError("--mnist and --data-dir both name the MNIST source; give one of them")
            args.data_dir = args.mnist
        return run(args)

    return run_with_mnist


def add_rnn_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_training_arguments(parser)
    cli.add_data_arguments(parser, "e.g. ../shared/data/elec576/MNIST", image_mode=False)
    add_mnist_argument(parser)
    add_cell_arguments(parser, "or a comma list (every combination is trained)")


def run_rnn(args) -> int:
    base = RNNConfig.quick() if args.quick else RNNConfig()
    cells, hidden = args.cell or (base.cell,), args.hidden or (base.hidden,)
    configs = [cli.config_from_args(base, args, cell=c, hidden=h) for c, h in itertools.product(cells, hidden)]
    sweep(configs, args.out, progress=args.progress, command=args.command)
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_training_arguments(parser)
    cli.add_data_arguments(parser, "an MNIST folder, e.g. ../shared/data/elec576/MNIST", image_mode=False)
    add_mnist_argument(parser)
    add_cell_arguments(parser, "(one value; default: the best of --task rnn's sweep, else LSTM-128)")


def _sweep_settings(quick: bool, root: str) -> list[str]:
    return ["--cell", ",".join(CELLS), "--hidden", "64,128" if quick else "16,32,64,128"]


RNN = cli.Task("rnn", "RNN/LSTM/GRU on MNIST rows, hidden-size sweeps (Part 3a-3b)", add_rnn_arguments,
               with_mnist(run_rnn),
               all_args=_sweep_settings,
               all_skips=("--data-dir",),  # in `--task all`, --data-dir is the CIFAR10 folder
               report=RNN_SECTION)
COMPARE = cli.Task(
    "compare", "LeNet5 vs the best recurrent net on the same MNIST splits (Part 3c)", add_compare_arguments,
    with_mnist(compare.run),
    # In the chain it compares the sweep's best net with LeNet5 at each net's report rate, --seeds N models each.
    all_skips=("--data-dir", "--lr", "--cell", "--hidden"), report=COMPARE_SECTION)
