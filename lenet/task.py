"""The LeNet5 package's tasks: `--task lenet` (Part 1b), `--task visualize` (Part 1c) and `--task ablation`.

Each declares its flags, its run and its place in `--task all`; the work is in lenet/train.py and
lenet/visualize.py, the report sections in lenet/report.py.
"""
from __future__ import annotations

import argparse
import os
import sys

from common import cli
from lenet import ablation, visualize
from lenet import checkpoint as lenet_checkpoint
from lenet.ablation_report import ABLATION_SECTION
from lenet.config import LeNetConfig
from lenet.report import LENET_SECTION, VISUALIZE_SECTION
from lenet.train import train_and_evaluate

COURSE_FOLDER = "e.g. ../shared/data/elec576/CIFAR10"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("LeNet5")
    g.add_argument("--conv-l2", type=cli.scalar_or_list(cli.nonneg_float), metavar="W[,W..]",
                   help="conv-kernel L2 weight(s); a list trains one model per value, vmapped")
    g.add_argument("--fc-l2", type=cli.scalar_or_list(cli.nonneg_float), metavar="W[,W..]",
                   help="fc1-kernel L2 weight(s); a list trains one model per value, vmapped")
    g.add_argument("--no-batchnorm", dest="use_batchnorm", action="store_const", const=False,
                   help="LeNet5 without batch norm")


def add_lenet_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_training_arguments(parser)
    cli.add_data_arguments(parser, COURSE_FOLDER)
    add_model_arguments(parser)


def make_config(args) -> LeNetConfig:
    """The report's config (or its quick preset), overridden by the flags; validated by the library entry that
    uses it (`train_and_evaluate`, `visualize`), before it reads data or opens a folder."""
    return cli.config_from_args(LeNetConfig.quick() if args.quick else LeNetConfig(), args)


def run_lenet(args) -> int:
    result = train_and_evaluate(make_config(args), args.out, progress=args.progress, command=args.command)
    m = result.metrics
    print(f"LeNet5: train {m['train_accuracy']:.4f}, validation {m['val_accuracy']:.4f}, test "
          f"{m['test_accuracy']:.4f} accuracy after {m['epochs']} epochs ({m['wall_seconds']:.0f} s); "
          f"results in {result.out_dir}", file=sys.stdout)
    return 0


def add_visualize_arguments(parser: argparse.ArgumentParser) -> None:
    v = parser.add_argument_group("visualize")
    v.add_argument("--checkpoint",
                   help=f"folder written by --task lenet (default: {lenet_checkpoint.DEFAULT_CHECKPOINT})")
    v.add_argument("--train-if-missing", action="store_true",
                   help="train the checkpoint first when there is none (with the training flags below)")
    v.add_argument("--compare-batchnorm", action="store_true", help="also train/load LeNet5 without batch norm")
    cli.add_training_arguments(parser)
    cli.add_data_arguments(parser, "default: the checkpoint's own data")


def run_visualize(args) -> int:
    checkpoint = (args.checkpoint or lenet_checkpoint.DEFAULT_CHECKPOINT).rstrip("/") or "/"
    final = visualize.visualize(
        checkpoint, args.out, compare_batchnorm=args.compare_batchnorm, train_if_missing=args.train_if_missing,
        train_config=make_config(args) if args.train_if_missing else None, data_dir=args.data_dir,
        tfds_data_dir=args.tfds_data_dir, image_mode=args.image_mode, progress=args.progress, command=args.command)
    print(f"visualize: figures and {visualize.STATS_JSON} in {final}")
    return 0


LENET = cli.Task("lenet", "train LeNet5 on CIFAR10 with the report's settings (Part 1b, Figure 1)",
                 add_lenet_arguments, run_lenet, report=LENET_SECTION)
VISUALIZE = cli.Task(
    "visualize", "conv1 filters, activation statistics, feature maps (Part 1c, Figures 2-3)",
    add_visualize_arguments, run_visualize, needs=("lenet",),
    # It reads the chain's LeNet5 and trains the one without batch norm with that run's settings.
    all_args=lambda quick, root: ["--checkpoint", os.path.join(root, "lenet"), "--compare-batchnorm"],
    all_skips=cli.TRAINING_FLAGS, report=VISUALIZE_SECTION)


def add_ablation_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_training_arguments(parser)
    cli.add_data_arguments(parser, COURSE_FOLDER)
    a = parser.add_argument_group("ablation")
    a.add_argument("--variants", metavar="NAME[,NAME..]",
                   help="the variants to train (default: all): " + ", ".join(v.name for v in ablation.VARIANTS)
                        + "; finished members of others are kept")


def run_ablation(args) -> int:
    names = ablation.parse_variants(args.variants)
    seeds = {} if args.seeds else {"seeds": ablation.DEFAULT_SEEDS}
    config = cli.config_from_args(LeNetConfig.quick() if args.quick else LeNetConfig(), args, **seeds)
    result = ablation.run_ablation(config, args.out, names, progress=args.progress, command=args.command)
    matters = [f"{n} ({m})" for n, e in result.get("effects", {}).items()
               for m, _ in ablation.METRICS if e[m]["verdict"] == "matters"]
    print(f"ablation: {len(result.get('effects', {}))} variants against the baseline over "
          f"{len(result.get('seeds', []))} seed(s); matters: {', '.join(matters) or 'none judged so'}; results in "
          f"{args.out}", file=sys.stdout)
    return 0


ABLATION = cli.Task("ablation", "which of the report's ten LeNet5 settings matter: each changed alone, over seeds "
                    "(hours on a CPU; not part of --task all)", add_ablation_arguments, run_ablation,
                    report=ABLATION_SECTION, in_all=False)
