"""`python run.py --task lenet`: the report's LeNet5 run (Part 1b)."""
from __future__ import annotations

import sys

from common.cli import config_from_args, default_out
from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate


def run(args) -> int:
    config = config_from_args(LeNetConfig, args).validate()
    result = train_and_evaluate(config, default_out(args), progress=args.progress)
    m = result.metrics
    print(f"LeNet5: train {m['train_accuracy']:.4f}, validation {m['val_accuracy']:.4f}, test "
          f"{m['test_accuracy']:.4f} accuracy after {m['epochs']} epochs ({m['wall_seconds']:.0f} s); "
          f"results in {result.out_dir}", file=sys.stdout)
    return 0
