"""RNN/LSTM/GRU on MNIST rows (Part 3a-3b): `train_and_evaluate(config, workdir)` and the hidden-size `sweep`.

Every configuration trains into its own subfolder `<out>/<cell>_h<hidden>/` (metrics.json, history.csv,
fig_<cell>_h<hidden>.png, checkpoint/); the sweep then writes summary.csv, summary.json, fig_summary.png and
fig_validation_by_size.png into `<out>`. The data are loaded once for the whole sweep. The sweep is one unit: it
works in `<out>.partial/`, keeps a member an earlier (killed) run finished there with the same config on the
same data, and replaces `<out>` only when every member is done. A sweep into an earlier sweep's folder keeps the
earlier members it does not name (copied in before the commit) and summarises every member.
"""
from __future__ import annotations

import csv
import os
import sys

from common import data as data_lib
from common.run import fit, results
from common.runtime import outputs
from recurrent import plots
from recurrent.config import CELL_TITLES, CELLS, RNNConfig
from recurrent.model import RecurrentClassifier

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
    """Trains every configuration (sharing one loaded dataset) into `<out>.partial/<name>/`, skipping members
    finished there earlier with the same config and data (`finished_member`), then writes the summary table and
    figures once and moves the whole folder to `out` (common.runtime.outputs.RunDir). The members of an earlier sweep
    in `out` that this one does not name are kept (`_keep_earlier_members`), and the summaries cover every
    member, so a narrower sweep (the report's command for one figure) never deletes a result. Returns the
    summary rows of the members it names."""
    for config in configs:
        config.validate()
    dataset = data_lib.load_dataset(configs[0].data)
    fingerprint = data_lib.fingerprint(dataset)
    run = outputs.RunDir(out, task="rnn", config={"sweep": [c.to_dict() for c in configs]})
    try:
        run.open()
        rows, curves = [], []
        for config in configs:
            member = run.shared_path(config.name)  # process 0's folder: every process makes the same choice
            if run.writer:
                outputs.finish_commit(member, "rnn")  # a member killed while it moved into place
            kept = finished_member(member, config, dataset, fingerprint)
            if kept is None:
                result = train_and_evaluate(config, member, dataset, progress, command)
                metrics, history = result.metrics, result.history
            else:
                metrics, history = kept
                print(f"{config.name}: kept, finished {metrics.get('finished_at')} by an interrupted run of this "
                      "sweep with the same config and data", file=sys.stderr, flush=True)
            rows.append(summary_row(config, metrics))
            curves.append((config.cell, config.hidden, history))
            print(f"{config.name}: test accuracy {metrics['test_accuracy']:.4f} ({metrics['param_count']} "
                  f"parameters, {report_time(metrics)})", file=sys.stdout, flush=True)
        if run.writer:
            earlier = _earlier_members(run.final, {c.name for c in configs})
            _set_aside_strays(run, configs, earlier)
            copied = _keep_earlier_members(run, earlier).values()
            every = [(r, (r["cell"], r["hidden"], h)) for r, h in copied] + list(zip(rows, curves, strict=True))
            every.sort(key=lambda rc: (CELLS.index(rc[0]["cell"]), rc[0]["hidden"]))
            _write_summaries(run, [r for r, _ in every], [c for _, c in every])
        run.commit()
    finally:
        run.release()
    return rows


def summary_row(config: RNNConfig, m: dict) -> dict:
    """One line of summary.csv: the configuration and its selected epoch's numbers."""
    return {"cell": config.cell, "hidden": config.hidden, "seeds": config.train.seeds,
            "test_accuracy": m["test_accuracy"], "test_accuracy_std": m.get("test_accuracy_std"),
            "val_accuracy": m["val_accuracy"], "train_accuracy": m["train_accuracy"],
            "param_count": m["param_count"], "epochs": m["epochs"],
            # each time with its basis in its name (common.run.results): None where the run had no such epochs
            **{k: m.get(k) for k in ("train_seconds_per_epoch_after_first", "train_seconds_first_epoch",
                                     "train_images_per_sec_after_first")}}


def report_time(m: dict) -> str:
    """'0.65 training s/epoch after the first' or '15.5 training s in the only epoch, compilation included'."""
    after = m.get("train_seconds_per_epoch_after_first")
    if after is not None:
        return f"{after:.2f} training s/epoch after the first"
    return f"{m.get('train_seconds_first_epoch') or 0.0:.2f} training s in the only epoch, compilation included"


def finished_member(folder: str, config: RNNConfig, dataset: data_lib.Dataset,
                    fingerprint: str) -> tuple[dict, list[dict]] | None:
    """(metrics, history) of the finished result in `folder` when it was trained with `config` on the same
    data (its `data_fingerprint`, or where it has none its source and split sizes), else None."""
    metrics = results.finished_metrics(folder, config.to_dict(), fingerprint)
    if metrics is None:
        return None
    sizes = (len(dataset.train), len(dataset.val), len(dataset.test))
    # metrics.json writes the source as the report does (results.readable): compare it so
    same_data = (metrics.get("data_source") in (dataset.source, results.portable(dataset.source,
                                                                                 results.results_root(folder)))
                 and tuple(metrics.get(f"{s}_size", -1) for s in ("train", "val", "test")) == sizes)
    if not same_data:
        return None
    try:
        return metrics, read_history(os.path.join(folder, results.HISTORY_CSV))
    except (OSError, ValueError, KeyError):
        return None


def read_history(path: str) -> list[dict]:
    """`fit`'s history rows back from history.csv: one row per epoch, and where several models trained together
    (a `seed` column) each value a list over the models."""
    with open(path, newline="") as f:
        rows = [{k: None if v == "" else float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    by_epoch: dict[int, list[dict]] = {}
    for r in rows:
        by_epoch.setdefault(int(r["epoch"]), []).append(r)
    several = bool(rows) and "seed" in rows[0]
    return [{**{k: ([m[k] for m in models] if several else models[0][k]) for k in models[0]}, "epoch": epoch}
            for epoch, models in by_epoch.items()]


def _earlier_members(final: str, named: set[str]) -> dict[str, tuple[dict, list[dict]]]:
    """{name: (summary row, history)} of the members of the finished sweep in `final` (this project's rnn result)
    that `named` does not name, each a finished rnn result of its own whose metrics and history can be read."""
    marker = outputs.read_marker(final)
    if not marker or marker.get("kind") != "result" or marker.get("task") != "rnn":
        return {}
    found = {}
    for name in sorted(set(os.listdir(final)) - named):
        folder = os.path.join(final, name)
        member = outputs.read_marker(folder) if os.path.isdir(folder) and not os.path.islink(folder) else None
        metrics = outputs.read_json(os.path.join(folder, results.METRICS_JSON))
        config = (metrics or {}).get("config")
        if not member or member.get("task") != "rnn" or not isinstance(config, dict) or \
                f"{config.get('cell')}_h{config.get('hidden')}" != name or config.get("cell") not in CELLS:
            continue
        try:
            found[name] = (summary_row(RNNConfig.from_dict(config), metrics),
                           read_history(os.path.join(folder, results.HISTORY_CSV)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _keep_earlier_members(run: outputs.RunDir, earlier: dict) -> dict:
    """Copies each earlier member (see `_earlier_members`) into the working folder unless a copy of it is
    there already (a rerun after a kill), through a temporary name, so a kill never leaves half a member;
    the files are hard links where the filesystem allows (the old folder's names are deleted at commit)."""
    for name in earlier:
        target = run.path(name)
        if os.path.isdir(target):
            continue
        outputs.copy_result(os.path.join(run.final, name), target)
    if earlier:
        print(f"note: kept {', '.join(list(earlier)[:4])}{', ...' if len(earlier) > 4 else ''} from the earlier "
              f"sweep in {run.final} (not named by this one); the summaries cover all "
              f"{len(earlier) + len(run.config['sweep'])} members", file=sys.stderr)
    return earlier


def _set_aside_strays(run: outputs.RunDir, configs: list[RNNConfig], earlier: dict) -> None:
    """Moves what an earlier sweep with other members left in the working folder out of this result (once,
    to `<out>.partial.other-<time>`: `outputs.set_aside`). A copy of an earlier member this sweep keeps is
    not a stray when it is that member (the same marker); a half-made copy (a temporary name) is removed."""
    keep = outputs.member_entries(c.name for c in configs)
    keep |= {outputs.PARTIAL_MARKER, SUMMARY_CSV, SUMMARY_JSON, SUMMARY_FIGURE, VALIDATION_FIGURE}
    keep |= {n for n in earlier
             if outputs.read_marker(run.path(n)) == outputs.read_marker(os.path.join(run.final, n))}
    outputs.set_aside_strays(run, sorted(set(os.listdir(run.work)) - keep),
                             f"left in {run.work} by an earlier sweep with other members")


def _write_summaries(run: outputs.RunDir, rows: list[dict], curves: list) -> None:
    """summary.csv/json and the two sweep figures, once every member is done (none for a single member)."""
    if len(rows) < 2:
        return
    outputs.write_csv(run.path(SUMMARY_CSV), rows)
    environment = results.portable(outputs.environment_info(), results.results_root(run.final + os.sep + "member"))
    outputs.atomic_write_json(run.path(SUMMARY_JSON), {"runs": rows, "environment": environment})
    plots.plot_sweep_summary(rows, run.path(SUMMARY_FIGURE))
    plots.plot_validation_overlay(curves, run.path(VALIDATION_FIGURE))
