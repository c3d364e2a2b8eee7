"""Entry point: `python run.py --task lenet` (`python run.py --help` lists the tasks).

The registry names each task's declaration (`common.cli.Task`) by module path; a task is imported only when
it runs (or when the help lists them). A new experiment adds its line here and nothing in common/.
"""
import sys

from common import cli

TASKS = cli.Registry({
    "lenet": "lenet.task:LENET",
    "visualize": "lenet.task:VISUALIZE",
    "deconv": "deconv.task:DECONV",
    "rnn": "recurrent.task:RNN",
    "compare": "recurrent.task:COMPARE",
    "ablation": "lenet.task:ABLATION",
    "report": "common.run_all:REPORT",
    "all": "common.run_all:ALL",
    "export": "common.export_task:EXPORT",
}, title="ELEC 576 Assignment 2 in JAX/Flax: results", reference="../shared/assignment-report.txt")


def main(argv=None) -> int:
    return cli.main(TASKS, argv)


if __name__ == "__main__":
    sys.exit(main())
