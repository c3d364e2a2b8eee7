"""RNN/LSTM/GRU on MNIST rows (Part 3a-3b): `train_and_evaluate(config, workdir)` and the hidden-size `sweep`.

Every configuration trains into its own subfolder `<out>/<cell>_h<hidden>/` (metrics.json, history.csv,
fig_<cell>_h<hidden>.png, checkpoint/); the sweep then writes summary.csv, summary.json, fig_summary.png and
fig_validation_by_size.png into `<out>`. The data are loaded once for the whole sweep.
"""
from __future__ import annotations

import os
import sys

from common import data as data_lib
from common import distributed, outputs
from common.train import fit
from recurrent import plots
from recurrent.cells import RecurrentClassifier
from recurrent.config import CELL_TITLES, RNNConfig

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_FIGURE = "fig_summary.png"
VALIDATION_FIGURE = "fig_validation_by_size.png"


def figure_name(cell: str, hidden: int) -> str:
    return f"fig_{cell}_h{hidden}.png"


def create_model(config: RNNConfig, num_classes: int = 10) -> RecurrentClassifier:
    return RecurrentClassifier(cell=config.cell, hidden=config.hidden, num_classes=num_classes,
                               init_scheme=config.init_scheme)


def train_and_evaluate(config: RNNConfig, workdir: str, dataset: data_lib.Dataset | None = None,
                       progress: bool = True, command: str | None = None) -> fit.FitResult:
    """Trains one recurrent classifier and writes its results into `workdir`; returns the final state."""
    config.validate()
    if dataset is None:
        dataset = data_lib.load_dataset(config.data)
    show = fit.Presentation(f"{CELL_TITLES[config.cell]} with {config.hidden} hidden units on MNIST",
                            figure_name(config.cell, config.hidden), command, progress)
    return fit.fit(create_model(config, len(dataset.class_names)), dataset, config.train, workdir, show,
                   task="rnn", config=config.to_dict())


def sweep(configs: list[RNNConfig], out: str, progress: bool = True, command: str | None = None) -> list[dict]:
    """Trains every configuration (sharing one loaded dataset) and writes the summary table and figure."""
    for config in configs:
        config.validate()
    dataset = data_lib.load_dataset(configs[0].data)
    rows, curves = [], []
    for config in configs:
        result = train_and_evaluate(config, os.path.join(out, config.name), dataset, progress, command)
        m = result.metrics
        rows.append({"cell": config.cell, "hidden": config.hidden, "seeds": config.train.seeds,
                     "test_accuracy": m["test_accuracy"], "test_accuracy_std": m.get("test_accuracy_std"),
                     "val_accuracy": m["val_accuracy"], "train_accuracy": m["train_accuracy"],
                     "param_count": m["param_count"], "seconds_per_epoch": m["seconds_per_epoch"],
                     "train_seconds_per_epoch": m["train_seconds_per_epoch"],
                     "train_images_per_sec": m["train_images_per_sec"], "epochs": m["epochs"]})
        curves.append((config.cell, config.hidden, result.history))
        print(f"{config.name}: test accuracy {m['test_accuracy']:.4f} ({m['param_count']} parameters, "
              f"{m['seconds_per_epoch']:.1f} s/epoch)", file=sys.stdout, flush=True)
    if len(rows) > 1 and distributed.is_writer():
        outputs.write_csv(os.path.join(out, SUMMARY_CSV), rows)
        outputs.write_json(os.path.join(out, SUMMARY_JSON), {"runs": rows, "environment": outputs.environment_info()})
        plots.plot_sweep_summary(rows, os.path.join(out, SUMMARY_FIGURE))
        plots.plot_validation_overlay(curves, os.path.join(out, VALIDATION_FIGURE))
    return rows
