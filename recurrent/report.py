"""The report's Part 3a-3b (`--task rnn`) and Part 3c (`--task compare`): the assignment's targets and claims with
their verdicts, the sweep's and the comparison's tables, what is missing and why, and the captions of their
figures."""
from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable

from common import report
from common.report import (
    NO_TARGET,
    NOT_JUDGED,
    Claim,
    Estimate,
    Section,
    Target,
    fixed_caption,
    generic_caption,
    plotting,
)
from common.report.document import Block, Cell, CellLike, Missing, Para, Table
from common.runtime.outputs import METRICS_JSON, read_json
from lenet.train import FIGURE as LENET_FIGURE
from recurrent import compare
from recurrent.config import CELL_TITLES, CELLS, RNNConfig
from recurrent.train import SUMMARY_FIGURE, VALIDATION_FIGURE, figure_name

RNN_KEY, COMPARE_KEY = "rnn", "compare"  # the tasks, and their folders under the results root
COMPARISON_JSON = compare.TABLE + ".json"
RNN64_TARGET = Target(0.96, 0.97, "0.96-0.97 (96-97%) train, validation and test")
LSTM128_TARGET = Target(0.98, 0.99, "0.98-0.99 (98-99%) train, validation and test")
RNN_TARGETS = {("rnn", 64): RNN64_TARGET, ("lstm", 128): LSTM128_TARGET}  # (cell, hidden) -> the report's
# The assignment's ranges on the per-run accuracy panels (recurrent.train's titles start with the cell's title)
# each on its own configuration's figures only (recurrent.train's titles: '<cell title> with <h> hidden units ...')
plotting.register_targets(f"{CELL_TITLES['rnn']} with 64 hidden units",
                          [(0.96, 0.97, "assignment, simple RNN-64: 96-97%")])
plotting.register_targets(f"{CELL_TITLES['lstm']} with 128 hidden units",
                          [(0.98, 0.99, "assignment, LSTM-128: 98-99%")])
# The assignment's Figures 4-11: simple RNN then LSTM, hidden 16, 32, 64, 128.
ASSIGNMENT_HIDDEN = (16, 32, 64, 128)
ASSIGNMENT_FIGURE = {(cell, h): 4 + 4 * i + j for i, cell in enumerate(("rnn", "lstm"))
                     for j, h in enumerate(ASSIGNMENT_HIDDEN)}
CLAIM_3C = ("Surprisingly, the RNN training in this assignment was much easier to optimize than the CNN training "
            "from earlier in the assignment, perhaps because the images in the MNIST dataset had a higher "
            "resolution compared to the shrunken images in the CIFAR10 dataset")
SPLITS = (("test", "test"), ("val", "validation"), ("train", "train (eval mode)"))
# figure_name(cell, hidden) with both parts captured; built from figure_name itself so the name has one source.
RUN_FIGURE = re.compile(re.escape(figure_name("CELL", 999)).replace("CELL", f"({'|'.join(CELLS)})")
                        .replace("999", r"(\d+)") + "$")


def run_caption(prefix: str, assignment_figure: bool) -> Callable[[str], str]:
    """Caption of a per-configuration recurrent figure `.../figure_name(cell, hidden)`."""

    def caption(path: str) -> str:
        m = RUN_FIGURE.search(path)
        if not m:
            return generic_caption(path)
        cell, hidden = m.group(1), int(m.group(2))
        target = RNN_TARGETS.get((cell, hidden)) if assignment_figure else None
        lines = f"; shaded band: the assignment's {target.text.split(' train')[0]}" if target else ""
        return f"{prefix}{CELL_TITLES[cell]} with {hidden} hidden units: accuracy and loss against epoch{lines}."

    return caption


def rnn_figure_number(path: str) -> int | None:
    """The assignment's number of a sweep run's figure ('rnn/lstm_h16/fig_lstm_h16.png' -> 8)."""
    m = RUN_FIGURE.search(path)
    if not m or not path.startswith(RNN_KEY + os.sep):
        return None
    return ASSIGNMENT_FIGURE.get((m.group(1), int(m.group(2))))


# ------------------------------------------------------------------------------------------- Part 3a-3b


def rnn_runs(root: str) -> list[dict]:
    """metrics.json of every recurrent run under <root>/rnn, in cell (CELLS) then hidden-size order."""
    runs = []
    for rel in report.files_under(root, RNN_KEY, depth=2):  # no link followed out of the root
        m = read_json(os.path.join(root, rel)) if rel.split(os.sep)[2:] == [METRICS_JSON] else None
        if m and m.get("config", {}).get("cell") in CELL_TITLES:
            runs.append(m)
    return sorted(runs, key=lambda m: (CELLS.index(m["config"]["cell"]), m["config"]["hidden"]))


def _by_config(root: str) -> dict[tuple[str, int], dict]:
    return {(m["config"]["cell"], m["config"]["hidden"]): m for m in rnn_runs(root)}


def _run_folder(m: dict) -> str:
    return f"{m['config']['cell']}_h{m['config']['hidden']}"


def _compare_member(root: str, row: dict) -> str:
    """The comparison's run folder a row of comparison.json names, when it names one plain folder of compare/
    (a '../..' or a path from a file someone edited reads nothing outside the results root); else ''."""
    name = str(row.get("folder") or "")
    inside = name and name == os.path.basename(name) and name not in (".", "..") and "\\" not in name
    return os.path.join(root, COMPARE_KEY, name) if inside else ""


def rnn_shrunk(root: str) -> list[str]:
    """How the sweep is smaller than the assignment's: epochs and training examples (runs grouped by how),
    and the hidden sizes of the assignment's figures it did not sweep."""
    defaults, groups = RNNConfig().to_dict(), {}
    for m in rnn_runs(root):
        parts = report.shrunk_parts(m.get("config", {}), m.get("epochs"), defaults)
        if parts:
            groups.setdefault(parts, []).append(_run_folder(m))
    out = [f"`{RNN_KEY}/` ({len(names)} run{'s' if len(names) > 1 else ''}): {parts}"
           for parts, names in groups.items()]
    swept = sorted({m["config"]["hidden"] for m in rnn_runs(root)})
    unswept = [h for h in ASSIGNMENT_HIDDEN if h not in swept]
    if swept and unswept:
        out.append(f"`{RNN_KEY}/`: hidden sizes {', '.join(map(str, swept))} swept, not "
                   f"{', '.join(map(str, unswept))}")
    return out


def one_run_command(root: str, cell: str, hidden: int) -> str:
    """The command that makes one configuration of the sweep under the root, with the environment (e.g.
    TFDS_DATA_DIR) the sweep's runs recorded."""
    runs = rnn_runs(root)
    env = ((runs[0].get("environment") or {}).get("command_env") or {}) if runs else {}
    prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())
    return prefix + "python run.py " + shlex.join(["--task", RNN_KEY, "--cell", cell, "--hidden", str(hidden),
                                                   "--out", os.path.join(root, RNN_KEY)])


def rnn_gaps(root: str, command: str) -> list[Missing]:
    """The assignment's Figures 4-11 this sweep did not make, each with why and the command for that run."""
    swept = sorted({m["config"]["hidden"] for m in rnn_runs(root)})
    out = []
    for (cell, hidden), number in ASSIGNMENT_FIGURE.items():
        name = f"{cell}_h{hidden}"
        if os.path.isfile(os.path.join(root, RNN_KEY, name, figure_name(cell, hidden))):
            continue
        why = (f"hidden size {hidden} was not swept (this sweep: {', '.join(map(str, swept))})"
               if hidden not in swept else f"{CELL_TITLES[cell]}-{hidden} was not run")
        out.append(Missing(f"the assignment's Figure {number}: {CELL_TITLES[cell]} with {hidden} hidden units "
                           f"(`{RNN_KEY}/{name}/{figure_name(cell, hidden)}`)",
                           one_run_command(root, cell, hidden), why))
    return out


def rnn_blocks(root: str) -> list[Block]:
    """The model and settings, then one line per run of the sweep."""
    c = RNNConfig()
    blocks: list[Block] = [Para(
        f"Hand-written cells over `jax.lax.scan`, each image row a time step; recurrent layer -> batch norm -> "
        f"dense 10. The assignment's settings: nadam {c.train.lr:g}, batch {c.train.batch_size}, {c.train.epochs} "
        "epochs, hidden sizes 16, 32, 64 and 128; its results: simple RNN with 64 hidden units 96-97%; LSTM with "
        "128 hidden units 98-99% (train, validation and test); the LSTM better than the RNN \u201ceven when using "
        "many fewer hidden units\u201d, at the price of \u201csignificantly more time spent training\u201d.")]
    shrunk = rnn_shrunk(root)
    if shrunk:
        blocks.append(Para(f"This sweep is shrunk ({'; '.join(shrunk)}) \u2014 {NOT_JUDGED}.", "finding"))
    runs = rnn_runs(root)
    if runs:
        blocks.append(Table(["cell", "hidden", "parameters", "test acc (best-validation epoch)", "val acc",
                             "train acc (eval mode)", f"{report.TRAIN_TIME} (basis)", "verdict"],
                            [_rnn_row(root, m, bool(shrunk)) for m in runs],
                            f"Every run under `{RNN_KEY}/`: accuracies as mean \u00b1 std over the seeds; "
                            f"{report.TRAIN_TIME}: training only, evaluation left out; the verdict is on the three "
                            "splits' 95% t-intervals. Commands, machine and every other time: \u201cHow these "
                            "results were made\u201d."))
    return blocks


def _rnn_row(root: str, m: dict, shrunk: bool) -> list[CellLike]:
    """One recurrent run's line: size, accuracies, training time on its basis, the verdict where the
    assignment gives a number for this configuration."""
    cfg = m["config"]
    target = RNN_TARGETS.get((cfg["cell"], cfg["hidden"]), NO_TARGET)
    timing = report.run_timing(os.path.join(root, RNN_KEY, _run_folder(m)), m)
    return [CELL_TITLES[cfg["cell"]], Cell(str(cfg["hidden"]), "num"), Cell(f"{m.get('param_count', 0):,}", "num"),
            *[Cell(report.fmt_estimate(report.estimate_of(m, f"{k}_accuracy"), per_seed=k == "test"), "num")
              for k in ("test", "val", "train")],
            Cell(report.fmt_train_time(timing), "small"),
            Cell(splits_verdict(m, target, shrunk) if target is not NO_TARGET else "", "small")]


def splits_measured(m: dict | None) -> str:
    """'test 0.9650 (0.951 to 0.979); validation ...; train ... (95% t-intervals, N = 2 seeds; ...)' or, with one
    seed, the point values said so."""
    if not m:
        return "missing"
    parts, estimates = [], []
    for key, label in SPLITS:
        e = report.estimate_of(m, f"{key}_accuracy")
        if e is None:
            continue
        estimates.append(e)
        parts.append(f"{label} {e.mean:.4f}" + (f" ({report.fmt_range(e.low, e.high)})" if e.n > 1 else ""))
    if not estimates:
        return "missing"
    n = estimates[0].n
    if n == 1:
        return "; ".join(parts) + " (1 seed: point values, no interval)"
    notes = (["clipped to 0 to 1"] if any(e.clipped for e in estimates) else []) + \
        ([report.WIDE_TWO] if n == 2 else [])
    return "; ".join(parts) + f" (95% t-intervals, N = {n} seeds" + "".join(f"; {x}" for x in notes) + ")"


def splits_verdict(m: dict | None, target: Target, shrunk: bool) -> str:
    """One verdict over the train, validation and test accuracies against one target (with one seed: the point
    values checked against the assignment's range, said so)."""
    if not m:
        return "n/a"
    if shrunk:
        return NOT_JUDGED
    estimates = {label: report.estimate_of(m, f"{key}_accuracy") for key, label in SPLITS}
    words = {label: report.verdict(e, target) for label, e in estimates.items()}
    lo, hi = report.target_band(target)
    n = next((e.n for e in estimates.values() if e is not None), 1)
    basis = ("one seed: the point values checked against the assignment's range, no interval" if n == 1 else
             f"95% t-intervals, N = {n} seeds")
    if all(w == "consistent" for w in words.values()):
        return f"consistent: every split {'lies within' if n == 1 else 'overlaps'} {report.fmt_range(lo, hi, 2)} " \
               f"({basis})"
    return "; ".join(f"{label} {w}" for label, w in words.items()) + \
        f" (against {report.fmt_range(lo, hi, 2)}; {basis})"


def steady_seconds(root: str, m: dict) -> Estimate | None:
    """The training seconds of each epoch after the first, over those epochs; None with one epoch."""
    return report.steady_epoch_seconds(
        report.read_history(os.path.join(root, RNN_KEY, _run_folder(m), report.HISTORY_CSV)))


WORDS = {"higher": "supported", "lower": "not supported", "overlap": "not separated"}  # report.separation's


def fewer_units_pair(runs: dict) -> tuple[int, int] | None:
    """(LSTM hidden, RNN hidden): the LSTM against an RNN with the most times more hidden units."""
    pairs = [(h, big) for (c, h) in runs if c == "lstm" for (c2, big) in runs if c2 == "rnn" and big > h]
    return max(pairs, key=lambda p: (p[1] / p[0], p[1])) if pairs else None


def _seeds(m: dict) -> int:
    return len(m.get("seeds") or [0])


def _fmt_seconds(e: Estimate) -> str:
    """'0.52 s (0.50 to 0.54 over 9 epochs after the first)' or '0.52 s (1 epoch after the first, no interval)'."""
    if e.n == 1:
        return f"{e.mean:.2f} s (1 epoch after the first, no interval)"
    return f"{e.mean:.2f} s ({report.fmt_range(e.low, e.high, 2)}, 95% t-interval over {e.n} epochs after the first)"


def rnn_3b_claims(root: str, runs: dict, shrunk: bool) -> list[Claim]:
    """Part 3b's comparisons: the LSTM more accurate with fewer units (over seeds), and slower to train (over the
    epochs after the first)."""
    claims = []
    pair = fewer_units_pair(runs)
    if pair:
        lstm, rnn = (report.estimate_of(runs[key], "test_accuracy") for key in (("lstm", pair[0]), ("rnn", pair[1])))
        claims.append(Claim("3b", f"the LSTM beats the simple RNN even with many fewer hidden units (LSTM-{pair[0]} "
                                  f"vs RNN-{pair[1]}, test accuracy)",
                            f"LSTM-{pair[0]} {report.fmt_measured(lstm)}; RNN-{pair[1]} {report.fmt_measured(rnn)}",
                            "LSTM better (no number)", report.comparison_verdict(lstm, rnn, WORDS, shrunk),
                            ref="3b-fewer-units"))
    hidden = max((h for (c, h) in runs if c == "lstm" and ("rnn", h) in runs), default=None)
    if hidden:
        lstm, rnn = (steady_seconds(root, runs[(c, hidden)]) for c in ("lstm", "rnn"))
        if lstm and rnn:
            measured = (f"LSTM {_fmt_seconds(lstm)}, RNN {_fmt_seconds(rnn)}; {lstm.mean / rnn.mean:.2f}x "
                        "(training only, the same seeds together)")
        else:
            timings = {c: report.run_timing(os.path.join(root, RNN_KEY, f"{c}_h{hidden}"), runs[(c, hidden)])
                       for c in ("lstm", "rnn")}
            measured = ", ".join(f"{CELL_TITLES[c]}-{hidden} {report.fmt_train_time(t)}" for c, t in timings.items())
        claims.append(Claim(
            "3b", f"the LSTM costs significantly more training time (LSTM-{hidden} vs RNN-{hidden}, "
            f"{report.TRAIN_TIME}, epochs after the first)", measured, "significantly more (no number)",
            report.time_comparison(lstm, rnn, WORDS, shrunk, min(_seeds(runs[(c, hidden)]) for c in ("lstm", "rnn"))),
            ref="3b-time"))
    return claims


def rnn_claims(root: str, command: str) -> list[Claim]:
    """Part 3a-3b's claims: RNN-64 and LSTM-128 against their ranges, then the two comparisons."""
    runs, shrunk = _by_config(root), bool(rnn_shrunk(root))
    claims = []
    for part, (cell, hidden), claim in (("3a", ("rnn", 64), "simple RNN, 64 hidden units: train, validation and "
                                         "test accuracy"),
                                        ("3b", ("lstm", 128), "LSTM, 128 hidden units: train, validation and test "
                                         "accuracy")):
        m = runs.get((cell, hidden))
        target = RNN_TARGETS[(cell, hidden)]
        measured = splits_measured(m) if m else f"missing: run `{one_run_command(root, cell, hidden)}`"
        claims.append(Claim(part, claim, measured, target.text.split(" train")[0], splits_verdict(m, target, shrunk),
                            f"{part}-{cell}{hidden}", ASSIGNMENT_FIGURE[(cell, hidden)]))
    return claims + rnn_3b_claims(root, runs, shrunk)


RNN_SECTION = Section(
    key=RNN_KEY, title="Part 3a-3b: RNN, LSTM and GRU on MNIST", anchor="part-3ab",
    required=(f"*/{METRICS_JSON}",), expected=(SUMMARY_FIGURE, VALIDATION_FIGURE),
    captions=((f"{RNN_KEY}/{SUMMARY_FIGURE}", fixed_caption(
        f"Across cells and hidden sizes: test accuracy at the best-validation epoch (error bars: \u00b1 std over "
        f"seeds when several), parameters and {report.TRAIN_TIME} over the epochs after the first (evaluation "
        f"left out; runs of one epoch are not drawn there: {report.ONE_EPOCH}).")),
              (f"{RNN_KEY}/{VALIDATION_FIGURE}", fixed_caption(
        "Validation accuracy per epoch for every hidden size, one panel per cell, all on one y axis (with "
        "several seeds: their mean and a min-max band); grey band: the assignment's range for the one "
        "configuration it names (simple RNN-64, LSTM-128), labelled. The per-run figures below have their own "
        "axes.")))
    + tuple((f"{RNN_KEY}/*/{figure_name(cell, '*')}", run_caption("", True)) for cell in CELLS),
    blocks=rnn_blocks, claims=rnn_claims, shrunk=rnn_shrunk, gaps=rnn_gaps, figure_number=rnn_figure_number)


# ---------------------------------------------------------------------------------------------- Part 3c


def comparison(root: str) -> dict | None:
    return read_json(os.path.join(root, COMPARE_KEY, COMPARISON_JSON))


def compare_shrunk(root: str) -> list[str]:
    """How the comparison's two runs are smaller than its full setting (the recurrent report's epochs, every
    training example)."""
    comp, defaults = comparison(root) or {}, RNNConfig().to_dict()
    out = []
    for row in comp.get("rows", []):
        folder = _compare_member(root, row)
        m = (read_json(os.path.join(folder, METRICS_JSON)) if folder else None) or {}
        text = report.shrunk_text(f"`{COMPARE_KEY}/{row.get('folder')}`", m.get("config", {}), m.get("epochs"),
                                  defaults)
        out += [text] if text else []
    return out


def _row_estimate(row: dict, key: str) -> Estimate | None:
    return report.estimate_of(row, key)


def compare_claims(root: str, command: str) -> list[Claim]:
    """Part 3c's claim (the RNN much easier to optimise than the CNN), judged on equal data."""
    comp = comparison(root)
    claim = "the RNN was much easier to optimise than the CNN (here: both on the same MNIST splits, test accuracy)"
    if not comp or len(comp.get("rows", [])) != 2:
        return [Claim("3c", claim, "missing" + (f": run `{command}`" if command else ""), "RNN easier (no number)",
                      "n/a", "3c")]
    rows = comp["rows"]
    measured = "; ".join(f"{r['model']} {report.fmt_measured(_row_estimate(r, 'test_accuracy'))}" for r in rows)
    verdict = compare.claim_verdict(rows, bool(compare_shrunk(root)))
    return [Claim("3c", claim, measured, "RNN easier (no number)", verdict, "3c")]


def compare_blocks(root: str) -> list[Block]:
    """The assignment's claim, then the comparison table, its summary and the verdict."""
    blocks: list[Block] = [Para(f"The assignment: \u201c{CLAIM_3C}.\u201d That contrast changes the dataset and the "
                                "architecture at once. Here LeNet5 (unchanged, 28x28x1 input) and the best "
                                "recurrent net train on the same MNIST splits with the same seed(s), each with its "
                                "own report hyperparameters, for the same number of epochs.")]
    comp = comparison(root)
    if comp:
        shrunk = compare_shrunk(root)
        blocks.append(_compare_table(root, comp))
        if comp.get("rows") and len(comp["rows"]) == 2:
            # the description is made here, from the rows, by the same rule as the verdict: one judgement
            lead = ("What the figures show (a shrunk run: a description, not a finding): " if shrunk else
                    "What the figures show (a description; the verdict below is the finding): ")
            blocks.append(Para(lead + compare.summary_text(comp["rows"], comp.get("target_accuracy",
                                                                                   compare.TARGET_ACCURACY)), ""))
            verdict = compare.claim_verdict(comp["rows"], bool(shrunk))
            blocks.append(Para("Verdict on the claim: " + verdict + (f" ({'; '.join(shrunk)})" if shrunk else ""),
                               "finding"))
    return blocks


def _compare_table(root: str, comp: dict) -> Table:
    """comparison.json's rows: size, accuracies (mean \u00b1 std over seeds), training time on its basis and
    the time each net took to reach the target (with its spread over seeds)."""
    target = comp.get("target_accuracy", compare.TARGET_ACCURACY)
    key_e, key_s = f"epochs_to_{compare._pct(target)}", f"train_seconds_to_{compare._pct(target)}"
    rows = []
    for r in comp.get("rows", []):
        folder = _compare_member(root, r)
        timing = report.run_timing(folder) if folder else None
        rows.append([r["model"], Cell(f"{r['param_count']:,}", "num"),
                     Cell(report.fmt_estimate(_row_estimate(r, "test_accuracy")), "num"),
                     Cell(report.fmt_estimate(_row_estimate(r, "val_accuracy"), per_seed=False), "num"),
                     Cell(report.fmt_train_time(timing), "small"),
                     Cell(compare.fmt_spread(r, key_e, "{:.1f}" if f"{key_e}_per_model" in r else "{}"), "num"),
                     Cell(compare.fmt_spread(r, key_s, "{:.1f}"), "num")])
    seeds = comp.get("seeds") or [comp.get("seed")]
    return Table(["model", "parameters", "test acc (best-validation epoch)", "val acc", f"{report.TRAIN_TIME} (basis)",
                  f"epochs to {compare.pct_text(target)}", f"cumulative training s to {compare.pct_text(target)}"],
                 rows,
                 f"{comp.get('data_source')}: {comp.get('train_size')} train / {comp.get('val_size')} "
                 f"validation / {comp.get('test_size')} test images, seed(s) {', '.join(map(str, seeds))}; "
                 f"recurrent net: {_committed(comp.get('recurrent_choice', {}).get('reason', 'n/a'))}. Cumulative "
                 "training "
                 "seconds: every epoch's training up to that one, compilation included, evaluation left out, all "
                 "seeds together.")


def _committed(text: str) -> str:
    """Older comparison.json files name the sweep's working folder: its committed name."""
    return text.replace(".partial", "")


COMPARE_SECTION = Section(
    key=COMPARE_KEY, title="Part 3c: CNN vs RNN on the same MNIST splits", anchor="part-3c",
    required=(COMPARISON_JSON,), expected=(compare.FIGURE,),
    captions=(
        (f"{COMPARE_KEY}/{compare.FIGURE}", fixed_caption(
            "LeNet5 against the recurrent net on the same MNIST splits and seeds: test accuracy against cumulative "
            f"training seconds (left) and epoch (middle), and training loss (right); dashed: "
            f"{compare.pct_text(compare.TARGET_ACCURACY)}; with several seeds, the mean and a min-max band.")),
        # LeNet5's run folder of the comparison: the only one that writes LeNet5's curves
        (f"{COMPARE_KEY}/*/{LENET_FIGURE}", fixed_caption(
            "LeNet5 on MNIST (same architecture as Part 1b, 28x28x1 input): accuracy and loss against epoch.")),
        (f"{COMPARE_KEY}/*/{figure_name('*', '*')}", run_caption("The recurrent net of the comparison: ", False)),
    ),
    blocks=compare_blocks, claims=compare_claims, shrunk=compare_shrunk)
