"""Entry point: `python run.py --task lenet`, or `elec576 --task lenet` once installed (`--help` lists the tasks).

The registry names each task's declaration (`common.cli.Task`) by module path, with its one line of help, so
`--help` lists the tasks without importing any (they import jax: seconds); a task is imported only when it runs.
tests/test_startup.py checks that these lines are the tasks' own. A new experiment adds its line here and nothing
in common/.
"""
import sys

from common import cli

TASKS = cli.Registry({
    "lenet": ("lenet.task:LENET", "train LeNet5 on CIFAR10 with the report's settings (Part 1b, Figure 1)"),
    "visualize": ("lenet.task:VISUALIZE",
                  "conv1 filters, activation statistics, feature maps (Part 1c, Figures 2-3)"),
    "deconv": ("deconv.task:DECONV", "Zeiler & Fergus deconvnet: top-9 activations projected to pixels (Part 2)"),
    "rnn": ("recurrent.task:RNN", "RNN/LSTM/GRU on MNIST rows, hidden-size sweeps (Part 3a-3b)"),
    "compare": ("recurrent.task:COMPARE", "LeNet5 vs the best recurrent net on the same MNIST splits (Part 3c)"),
    "ablation": ("lenet.task:ABLATION", "which of the report's ten LeNet5 settings matter: each changed alone, "
                 "over seeds (hours on a CPU; not part of --task all)"),
    "report": ("common.cli.run_all:REPORT", "gather every result into report.html and REPORT.md"),
    "all": ("common.cli.run_all:ALL", "run every task in order, then the report (--quick for a shrunk version)"),
    "export": ("common.cli.export_task:EXPORT",
               "write a folder or TFDS dataset as one portable .npz (--data-dir FILE.npz then reads it)"),
}, title="ELEC 576 Assignment 2 in JAX/Flax: results", reference="../shared/assignment-report.txt")


def main(argv=None) -> int:
    return cli.main(TASKS, argv)


if __name__ == "__main__":
    sys.exit(main())
