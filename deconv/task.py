"""`python run.py --task deconv`: the task's flags and entry (Part 2); the pipeline is deconv/experiment.py."""
from __future__ import annotations

import argparse
import os
import shutil
import time

from common import cli
from common import data as data_lib
from common.core.errors import UserError
from common.runtime.outputs import RunDir, atomic_write_json, refusal
from deconv import ops
from deconv.experiment import TOPK_JSON, DeconvSettings, deconv_experiment, resolve_filters
from deconv.report import DECONV_SECTION
from lenet import checkpoint as lenet_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("deconvnet")
    g.add_argument("--checkpoint",
                   help=f"folder written by --task lenet (default: {lenet_checkpoint.DEFAULT_CHECKPOINT})")
    g.add_argument("--layer", type=cli.comma_list(str, ("conv1", "conv2")), help="conv layer(s) to project")
    g.add_argument("--filters", type=cli.comma_list(cli.nonneg_int), help="filter indices (default: all)")
    g.add_argument("--top-k", type=cli.positive_int, help="top activations per filter (default 9)")
    g.add_argument("--split", choices=("val", "test"), help="split searched for top activations")
    g.add_argument("--mode", choices=ops.RELU_MODES, help="backward rectification rule")
    g.add_argument("--bn", choices=("transpose", "inverse"),
                   help="batch norm on the way down: multiply by its scale (transpose, default) or divide")
    cli.add_data_arguments(parser, "default: the checkpoint's own data", image_mode=False)


def settings_from_args(args) -> DeconvSettings:
    values = {"layers": args.layer, "filters": args.filters, "top_k": args.top_k, "split": args.split,
              "mode": args.mode, "bn": args.bn}
    return DeconvSettings(**{k: v for k, v in values.items() if v is not None}).validate()


def make_hint(checkpoint: str) -> str:
    """The command that makes a checkpoint (quoted in backticks by the loader): into `checkpoint` itself only
    when a lenet run may write there (absent, empty, or an earlier lenet result), never into a data folder."""
    if refusal(checkpoint, "lenet") is None:
        return f"python run.py --task lenet --out {checkpoint}"
    default = lenet_checkpoint.DEFAULT_CHECKPOINT
    return f"python run.py --task lenet --out {default}` and pass `--checkpoint {default}"


def run(args) -> int:
    settings = settings_from_args(args)
    checkpoint = (args.checkpoint or lenet_checkpoint.DEFAULT_CHECKPOINT).rstrip("/") or "/"
    how_to_make = make_hint(checkpoint)
    config, variables, run_info = lenet_checkpoint.load_lenet(checkpoint, how_to_make)
    resolve_filters(variables["params"], settings)  # bad --layer / --filters fail before any work
    config = lenet_checkpoint.with_data_overrides(config, args.data_dir, args.tfds_data_dir)
    t0 = time.perf_counter()
    dataset = data_lib.load_dataset(config.data)
    load_s = time.perf_counter() - t0
    rundir = RunDir(args.out)
    rundir.open(keep_partial=False)
    try:
        summary = deconv_experiment(config, variables, dataset, rundir.path(), settings,
                                    checkpoint=checkpoint, run_info=run_info)
    except UserError:
        shutil.rmtree(rundir.work, ignore_errors=True)  # nothing to resume here: leave no half-made folder
        raise
    summary["timing_seconds"]["data_loading"] = round(load_s, 2)
    atomic_write_json(rundir.path(TOPK_JSON), summary)
    final = rundir.commit()
    t = summary["timing_seconds"]
    print(f"deconv: top-{settings.top_k} search over {summary['split_size']} {settings.split} images "
          f"{t['topk_search']:.1f} s, projections {t['projections']:.1f} s, occlusion {t['occlusion']:.1f} s, "
          f"figures {t['figures']:.1f} s (data loading {load_s:.1f} s); results in {final}")
    return 0


DECONV = cli.Task(
    "deconv", "Zeiler & Fergus deconvnet: top-9 activations projected to pixels (Part 2)", add_arguments, run,
    needs=("lenet",), all_args=lambda quick, root: ["--checkpoint", os.path.join(root, "lenet")],
    report=DECONV_SECTION)
