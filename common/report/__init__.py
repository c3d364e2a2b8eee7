"""`--task report`: every result under a results root gathered into one report.html and REPORT.md.

The root holds one folder per task (`<root>/<Section.key>/`, plus run_all.json when `--task all` made it).
What a task's part of the report says is its experiment package's business: each package describes its part
as a `Section` (title, the files that show the part was run, the figures it makes with their captions and
the assignment's figure numbers, its text and tables, its claims of the assignment with their verdicts, and
how its runs were shrunk). This module knows no experiment: it takes the sections, in the order to show
them, and `command_for(key)`, the command that makes the part `key` under the root.

The page, top to bottom: what kind of run this is (full or shrunk, seeds, data), the headline table (one
line per claim of the assignment: the measured numbers with their 95% Student-t interval, the assignment's
number, the verdict), what is missing and why, how the results were made (commands with their environment,
machine, versions, every time on its named basis), then one section per part. It is built once as a list of
blocks (common.report.document) and rendered twice. Figures are found by walking each part's folders, so a new
figure shows up without a change here. On a shrunk run no claim is judged: every verdict reads NOT_JUDGED;
with one seed no comparison of two measured quantities is (ONE_SEED), and a judged one names its N. Beside a
shrunk report's headline stand the published full run's numbers (REFERENCE_JSON).

The report reads only what is inside the results root: the walks (`files_under`) follow no link and stop at
MAX_DEPTH levels and MAX_ENTRIES entries, a figure is embedded only when it is a regular file there, and a file
read by its name (metrics.json, history.csv) only when it is a regular file, not a link. It writes only its two
pages, each stamped with a digest of its text (`STAMP`): a REPORT.md or report.html that is not such a page
unchanged (a user's notes, a page edited since) is first moved aside to `<name>.replaced-<time>`, with a note.
"""
from __future__ import annotations

import csv
import dataclasses
import fnmatch
import functools
import hashlib
import io
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from statistics import median

from common.core import stats
from common.core.errors import UserError
from common.report.document import (
    BACKTICK,
    Block,
    Cell,
    CellLike,
    Figure,
    Heading,
    Missing,
    Para,
    Table,
    code,
    natural_key,
    number_figures,
    open_regular,
    regular_file_inside,
    to_html,
    to_markdown,
)
from common.report.provenance import (  # noqa: F401
    command_line,
    fmt_acc,
    fmt_lr,
    fmt_seconds,
    machine,
    relative_paths,
    results_note,
    settings,
    versions_text,
)
from common.runtime.outputs import (  # noqa: F401 (API)
    HISTORY_CSV,
    METRICS_JSON,
    PROJECT_ROOT,
    atomic_write_bytes,
    committed_path,
    read_json,
    unused_name,
)

HTML_NAME = "report.html"
MD_NAME = "REPORT.md"
RUN_ALL_JSON = "run_all.json"  # written by `--task all` into the root; read here for "How these results were made"

SKIP_DIRS = ("checkpoint",)  # model weights, never figures of the report
MAX_DEPTH = 8  # how many levels below a folder the report looks (results are at most 3 deep)
MAX_ENTRIES = 20000  # and how many entries of one walk it reads at most, whatever the tree holds
MAX_FIGURE_BYTES = 64 << 20  # a larger PNG is not embedded (the project's figures are well under 1 MB)
DEFAULT_TITLE = "Results"
NOT_JUDGED = "not judged: shrunk run"  # the verdict of every claim on a run smaller than the assignment's

CommandFor = Callable[[str], str]  # a section's key -> the full command that makes that part under the root


# ---------------------------------------------------------------------------------------------- numbers


@dataclasses.dataclass(frozen=True)
class Target:
    """What the assignment reports for one experiment: a point ('about 0.60') or a range ('96-97%')."""

    low: float | None
    high: float | None
    text: str
    tolerance: float = 0.0  # a point target ('about 0.60') counts as met within this distance

    def difference(self, measured: float | None) -> str:
        """Signed distance of `measured` from the target ('within' inside a range)."""
        if measured is None or self.low is None:
            return "n/a"
        if self.low == self.high:
            return f"{measured - self.low:+.3f}"
        if self.low <= measured <= self.high:
            return "within"
        edge = self.low if measured < self.low else self.high
        return f"{measured - edge:+.3f}"


NO_TARGET = Target(None, None, "not in the assignment")
INTERVAL_RULE = "95% Student-t interval, mean \u00b1 t(0.975, N\u22121)\u00b7std/\u221aN"  # how `aggregate` draws it
ACCURACY_RANGE = (0.0, 1.0)  # what an accuracy can be: its intervals are clipped to this
MIN_SEEDS = 2  # a comparison of two measured quantities needs this many seeds on both sides
ONE_SEED = "not judged: one seed (run with --seeds 3 or more to judge)"  # a comparison with N = 1 on a side
ONE_EPOCH = "not comparable: one epoch, includes compilation"  # a time comparison of one-epoch runs
SHRUNK_ONE_SEED = NOT_JUDGED + "; " + ONE_SEED.removeprefix("not judged: ")  # a comparison on a shrunk 1-seed run
WIDE_TWO = "N = 2: wide by nature, t = 12.7"  # said beside every interval over two seeds


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A measured quantity over N seeds: mean, sample std, the 95% t-interval (the value when N = 1) clipped to
    what the quantity can be (`clipped` says it was), values."""

    mean: float
    std: float
    low: float
    high: float
    values: tuple[float, ...]
    clipped: tuple[float, float] | None = None  # the quantity's range, when the interval was cut to it

    @property
    def n(self) -> int:
        return len(self.values)


def aggregate(values, bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean, sample std (ddof=1; 0 for one value) and the interval INTERVAL_RULE of per-seed values; the
    interval cut to `bounds` (e.g. ACCURACY_RANGE: an accuracy is never below 0 or above 1)."""
    v = tuple(float(x) for x in (values if isinstance(values, (list, tuple)) else [values]))
    mean, std, low, high = stats.t_interval(v)
    if bounds is not None and (low < bounds[0] or high > bounds[1]):
        return Estimate(mean, std, max(low, bounds[0]), min(high, bounds[1]), v, bounds)
    return Estimate(mean, std, low, high, v)


def target_band(target: Target) -> tuple[float, float]:
    """The target's range widened by its tolerance on each side."""
    high = target.high if target.high is not None else target.low
    return target.low - target.tolerance, high + target.tolerance


def verdict(estimate: Estimate | None, target: Target) -> str:
    """'consistent', 'below' or 'above': the estimate's interval (its value when N = 1) against
    `target_band(target)`; 'n/a' without a target or a measurement."""
    if estimate is None or target.low is None:
        return "n/a"
    low, high = target_band(target)
    if estimate.high < low:
        return "below"
    if estimate.low > high:
        return "above"
    return "consistent"


def estimate_of(metrics: dict | None, key: str) -> Estimate | None:
    """The Estimate of metrics[key] from its `<key>_per_model` values (one value when N = 1); an accuracy's
    interval is clipped to ACCURACY_RANGE."""
    if not metrics or metrics.get(key) is None:
        return None
    bounds = ACCURACY_RANGE if key.endswith("accuracy") else None
    return aggregate(metrics.get(f"{key}_per_model") or [metrics[key]], bounds)


def fmt_range(low: float, high: float, digits: int = 3) -> str:
    """'0.506 to 0.686', '-0.181 to 0.555': 'to', never a dash that could be a minus sign."""
    return f"{low:.{digits}f} to {high:.{digits}f}"


def fmt_estimate(estimate: Estimate | None, per_seed: bool = True, digits: int = 4) -> str:
    """'0.6012 (1 seed)' or '0.6012 \u00b1 0.0040 (3 seeds: 0.5970, 0.6010, 0.6050)' (\u00b1 the sample std)."""
    if estimate is None:
        return "n/a"
    if estimate.n == 1:
        return f"{estimate.mean:.{digits}f} (1 seed)"
    values = ": " + ", ".join(f"{v:.{digits}f}" for v in estimate.values) if per_seed else ""
    return f"{estimate.mean:.{digits}f} \u00b1 {estimate.std:.{digits}f} ({estimate.n} seeds{values})"


def interval_notes(estimate: Estimate) -> str:
    """What to know about an interval: clipped to the quantity's range, and wide by nature with two seeds."""
    notes = ([f"clipped to {fmt_range(*estimate.clipped, digits=0)}"] if estimate.clipped else []) + \
        ([WIDE_TWO] if estimate.n == 2 else [])
    return f" ({'; '.join(notes)})" if notes else ""


def fmt_interval(estimate: Estimate | None, digits: int = 3) -> str:
    """'95% t-interval 0.506 to 0.686' (with its notes: clipped, N = 2) or, with one seed, 'one seed: the point
    value, no interval'."""
    if estimate is None:
        return "n/a"
    if estimate.n == 1:
        return "one seed: the point value, no interval"
    return f"95% t-interval {fmt_range(estimate.low, estimate.high, digits)}{interval_notes(estimate)}"


def fmt_measured(estimate: Estimate | None, digits: int = 4) -> str:
    """The headline's measured cell: '0.6000 \u00b1 0.0141 (2 seeds); 95% t-interval 0.473 to 0.727 (...)'."""
    if estimate is None:
        return "n/a"
    return f"{fmt_estimate(estimate, per_seed=False, digits=digits)}; {fmt_interval(estimate)}"


def verdict_line(estimate: Estimate | None, target: Target, shrunk: bool = False) -> str:
    """'consistent: 0.598 to 0.606 (95% t-interval, N = 3 seeds) overlaps the assignment's 0.580 to 0.620'; with
    N = 1 the point value checked against the assignment's band, said so; NOT_JUDGED on a shrunk run."""
    word = verdict(estimate, target)
    if word == "n/a":
        return word
    if shrunk:
        return NOT_JUDGED
    lo, hi = target_band(target)
    wanted = f"{lo:.3f}" if lo == hi else fmt_range(lo, hi)
    if estimate.n == 1:
        relation = {"consistent": "lies within", "below": "is below", "above": "is above"}[word]
        return (f"{word}: {estimate.mean:.3f} (one seed: the point value checked against the assignment's band, "
                f"no interval) {relation} the assignment's {wanted}")
    measured = f"{fmt_range(estimate.low, estimate.high)} (95% t-interval, N = {estimate.n} seeds)"
    relation = {"consistent": "overlaps", "below": "is below", "above": "is above"}[word]
    return f"{word}: {measured} {relation} the assignment's {wanted}"


def separation(a: Estimate, b: Estimate) -> str:
    """'higher' when a's interval lies above b's, 'lower' when below, 'overlap' when they share a point;
    'one seed' when either side has fewer than MIN_SEEDS values (a point value is no evidence of a difference)."""
    if min(a.n, b.n) < MIN_SEEDS:
        return "one seed"
    if a.low > b.high:
        return "higher"
    if a.high < b.low:
        return "lower"
    return "overlap"


def seeds_used(a: Estimate, b: Estimate | None = None, unit: str = "seeds") -> str:
    """'N = 3 seeds' or 'N = 3 and 2 seeds': the N a comparison used, for the page to name."""
    if b is None or a.n == b.n:
        return f"N = {a.n} {unit}"
    return f"N = {a.n} and {b.n} {unit}"


def comparison_verdict(a: Estimate | None, b: Estimate | None, words: dict[str, str], shrunk: bool = False,
                       unit: str = "seeds") -> str:
    """One comparison of two measured quantities by `separation`, in `words` ({'higher': ..., 'lower': ...,
    'overlap': ...}), naming the N it used: 'supported: the 95% t-intervals do not overlap (N = 3 seeds)';
    NOT_JUDGED on a shrunk run, ONE_SEED when a side has one value, 'n/a' without a measurement."""
    if a is None or b is None:
        return "n/a"
    if shrunk:  # both reasons when both hold: a larger run with one seed would still judge nothing
        return SHRUNK_ONE_SEED if min(a.n, b.n) < MIN_SEEDS and unit == "seeds" else NOT_JUDGED
    sep = separation(a, b)
    if sep == "one seed":
        return ONE_SEED if unit == "seeds" else f"not judged: one {unit[:-1]} on a side, no interval"
    relation = "overlap" if sep == "overlap" else "do not overlap"
    wide = f"; {WIDE_TWO}" if min(a.n, b.n) == 2 else ""
    return f"{words[sep]}: the 95% t-intervals {relation} ({seeds_used(a, b, unit)}{wide})"


# ------------------------------------------------------------------------------------------------ times


@dataclasses.dataclass(frozen=True)
class Timing:
    """One run's times, each on one named basis: the epochs after the first (which compiles), or the only
    epoch, compilation included. Seconds are the median over those epochs; images/s count every model."""

    epochs: tuple[int, ...]  # the epochs the medians are over
    total_epochs: int
    train_seconds: float  # training only, evaluation left out
    epoch_seconds: float  # training and evaluation of the three splits
    images_per_sec: float  # all models together
    n_models: int
    wall_seconds: float | None  # the whole run (RUN_WALL)

    @property
    def basis(self) -> str:
        if self.total_epochs == 1:
            return "1 epoch, includes compilation; not comparable"
        first, last = self.epochs[0], self.epochs[-1]
        span = f"epoch {first}" if first == last else f"median of epochs {first}-{last}"
        return f"{span}; epoch 1 (compiling) left out"

    @property
    def images_per_model(self) -> float:
        return self.images_per_sec / self.n_models


TRAIN_TIME = "training s/epoch"  # the name of the training time everywhere in the report
EPOCH_TIME = "epoch s with evaluation"
IMAGES_PER_SEC = "training images/s"
RUN_WALL = ("every epoch's training and evaluation, compilation included; loading the data "
            "and writing the results left out")


def history_by_model(path: str) -> list[list[dict]]:
    """history.csv split into one history per model (its rows come epoch by epoch, the models of an epoch in
    order), numbers as floats; [] when there is none."""
    raw = open_regular(path)  # never a link: a results folder someone sent may point anywhere
    if raw is None:
        return []
    by_epoch: dict[int, list[dict]] = {}
    with io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
        try:
            for row in csv.DictReader(f):
                parsed = {k: _number(v) for k, v in row.items()}
                by_epoch.setdefault(int(parsed["epoch"]), []).append(parsed)
        except (KeyError, ValueError, TypeError, csv.Error):  # damaged (UnicodeDecodeError is a ValueError)
            return []
    epochs = sorted(by_epoch)
    n = min(len(by_epoch[e]) for e in epochs) if epochs else 0
    return [[by_epoch[e][i] for e in epochs] for i in range(n)]


def read_history(path: str) -> list[dict]:
    """The first model's history (the times are the run's, the same in every model's rows)."""
    models = history_by_model(path)
    return models[0] if models else []


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _first(metrics: dict, *keys: str) -> float:
    """The first of `keys` that metrics.json has (a field's name now, then its name in older results), else 0."""
    return next((float(metrics[k]) for k in keys if metrics.get(k) is not None), 0.0)


def run_timing(folder: str, metrics: dict | None = None) -> Timing | None:
    """The Timing of the run in `folder` (its metrics.json and history.csv); None without metrics.json.
    Without a history the medians fall back to metrics.json's fields on the same rule."""
    metrics = metrics if metrics is not None else read_json(os.path.join(folder, METRICS_JSON))
    if not metrics:
        return None
    n_models = len(metrics.get("models") or metrics.get("seeds") or [0])
    history = [r for r in read_history(os.path.join(folder, HISTORY_CSV)) if r.get("train_seconds") is not None]
    steady = history[1:] or history
    if not steady:  # no history: metrics.json's medians (named by basis; older results: unnamed, same rule)
        total = int(metrics.get("epochs") or 1)
        after = "after_first" if total > 1 else "first_epoch"
        return Timing(tuple(range(min(2, total), total + 1)), total,
                      _first(metrics, f"train_seconds_{'per_epoch_' * (total > 1)}{after}", "train_seconds_per_epoch"),
                      _first(metrics, f"epoch_seconds_{after}", "seconds_per_epoch"),
                      _first(metrics, f"train_images_per_sec_{after}", "train_images_per_sec"),
                      n_models, metrics.get("wall_seconds"))
    return Timing(tuple(int(r["epoch"]) for r in steady), len(history),
                  median([r["train_seconds"] for r in steady]), median([r["epoch_seconds"] for r in steady]),
                  median([r["train_images_per_sec"] for r in steady]), n_models, metrics.get("wall_seconds"))


def fmt_train_time(t: Timing | None) -> str:
    """'0.52 s (median of epochs 2-10; epoch 1 (compiling) left out)' or '12.6 s (1 epoch, includes
    compilation)'."""
    return "n/a" if t is None else f"{t.train_seconds:.2f} s ({t.basis})"


def steady_epoch_seconds(history: list[dict]) -> Estimate | None:
    """The training seconds of each epoch after the first, over those epochs; None with one epoch (it is mostly
    compilation, so no time comparison uses it)."""
    rows = [r for r in history[1:] if r.get("train_seconds") is not None]
    return aggregate([r["train_seconds"] for r in rows], (0.0, float("inf"))) if rows else None


def time_comparison(a: Estimate | None, b: Estimate | None, words: dict[str, str], shrunk: bool,
                    seeds: int) -> str:
    """A comparison of two runs' training times over the epochs after the first (`steady_epoch_seconds`):
    ONE_EPOCH when a run had only one epoch; like every comparison, not judged on a shrunk run or with one seed
    (`seeds`: the fewer of the two runs'), else `comparison_verdict` over those epochs."""
    if a is None or b is None:
        return f"{NOT_JUDGED}; {ONE_EPOCH}" if shrunk else ONE_EPOCH
    if seeds < MIN_SEEDS and not shrunk:
        return ONE_SEED
    return comparison_verdict(a, b, words, shrunk, unit="epochs after the first")


def fmt_images(t: Timing | None) -> str:
    """'93 per model, 186 for the 2 models together' (or '186' for one model)."""
    if t is None:
        return "n/a"
    if t.n_models == 1:
        return f"{t.images_per_sec:.0f} (1 model)"
    return f"{t.images_per_model:.0f} per model, {t.images_per_sec:.0f} for the {t.n_models} models together"


def timing_sentence(t: Timing | None) -> str:
    """Every time of one run, each named with its basis (for a table's caption)."""
    if t is None:
        return ""
    wall = f"; {fmt_seconds(t.wall_seconds)} for the whole run (epochs with evaluation)" if t.wall_seconds else ""
    return (f"{TRAIN_TIME} {fmt_train_time(t)}; {EPOCH_TIME} {t.epoch_seconds:.2f} s (same epochs); "
            f"{IMAGES_PER_SEC} {fmt_images(t)} (same epochs){wall}")


# ----------------------------------------------------------------------------------------------- claims


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the assignment and how this run measures against it: a line of the headline table."""

    part: str  # '1b'
    claim: str  # what the assignment says, in a few words
    measured: str  # the numbers, with their interval
    assignment: str  # the assignment's number ('about 0.60')
    verdict: str  # in words; NOT_JUDGED on a shrunk run, ONE_SEED for a comparison of one seed
    ref: str = ""  # the claim's key in the reference file (REFERENCE_JSON's "claims"): '1b-test'
    figure: int | None = None  # the assignment's figure that shows it (its anchor on the page: 'figure-<n>')


HEADLINE_HEADERS = ["part", "claim of the assignment", "measured (mean \u00b1 std over seeds; 95% t-interval)",
                    "assignment", "verdict"]
REFERENCE_HEADER = "published full run"
# The published full run's numbers, shown beside each headline row of a shrunk or one-seed report (the format:
# docs/report.md, "The reference column"). Beside the repository's code, so any results folder can use it.
REFERENCE_JSON = os.path.join(PROJECT_ROOT, "docs", "results", "reference.json")


def accuracy_claim(part: str, claim: str, estimate: Estimate | None, target: Target, shrunk: bool,
                   command: str = "", ref: str = "", figure: int | None = None) -> Claim:
    """A claim that one accuracy is near the assignment's; 'missing' (with the command) when not measured."""
    if estimate is None:
        return Claim(part, claim, "missing" + (f": run `{command}`" if command else ""), target.text, "n/a", ref,
                     figure)
    return Claim(part, claim, fmt_measured(estimate), target.text, verdict_line(estimate, target, shrunk), ref,
                 figure)


def read_reference(path: str = "") -> dict:
    """The published full run (REFERENCE_JSON): {'commit', 'seeds', 'machine', 'claims': {ref: {'measured',
    'verdict'}}, ...}; {} when there is none, it is not JSON, or it has no claims."""
    ref = read_json(path or REFERENCE_JSON)
    return ref if isinstance(ref, dict) and isinstance(ref.get("claims"), dict) and ref["claims"] else {}


def reference_label(ref: dict) -> str:
    """'commit 1a2b3c4, 3 seeds, 2-core x86_64 CPU (docs/results/REPORT.md)': what the reference column is."""
    where = f" (`{ref['report']}`)" if ref.get("report") else ""
    note = f"; {ref['note']}" if ref.get("note") else ""
    seeds = ref.get("seeds", "?")
    return f"commit {ref.get('commit', '?')}, {seeds} seed{'' if seeds == 1 else 's'}, {ref.get('machine', '?')}" \
        f"{where}{note}"


def reference_cell(ref: dict, key: str) -> Cell:
    entry = (ref.get("claims") or {}).get(key) if key else None
    if not isinstance(entry, dict):
        return Cell("not in the published run", "small")
    return Cell("; ".join(str(entry[k]) for k in ("measured", "verdict") if entry.get(k)), "small")


def claim_row(c: Claim, anchor: str = "", reference: dict | None = None) -> list[CellLike]:
    """The headline's line of a claim: its part linked to its section (and the figure that shows it), the
    numbers, the verdict, and the published run's beside them when `reference` is given."""
    css = "missing" if c.measured.startswith("missing") else ""
    judged = "" if c.verdict.startswith(("not judged", "not comparable", "n/a")) else "judged"
    part = f"[{c.part}](#{anchor})" if anchor else c.part
    part += f" ([Fig. {c.figure}](#figure-{c.figure}))" if c.figure is not None else ""
    row = [part, c.claim, Cell(c.measured, css or "small"), Cell(c.assignment, "small"),
           Cell(c.verdict, f"verdict {judged}".strip())]
    return row + [reference_cell(reference, c.ref)] if reference else row


# ----------------------------------------------------------------------------------------------- contract


@dataclasses.dataclass(frozen=True)
class Section:
    """One part of the report, filled in by the experiment package whose task makes it.

    Paths in `captions` and `figure_number` are relative to the results root ('lenet/fig1_curves.png');
    `required` and `expected` are relative to the part's folder `<root>/<key>`."""

    key: str  # the task name = its folder under the results root
    title: str
    anchor: str  # HTML id of the section's heading
    required: tuple[str, ...]  # the part is present when any of these globs exists in root/key
    expected: tuple[str, ...]  # figures the task makes; absent ones are listed as missing
    captions: tuple[tuple[str, Callable[[str], str]], ...]  # (glob on the root-relative path, caption(path))
    blocks: Callable[[str], list[Block]]  # root -> the section's text and tables (also shown when missing)
    claims: Callable[[str, str], list[Claim]] | None = None  # (root, command) -> the part's claims
    shrunk: Callable[[str], list[str]] | None = None  # root -> how each of its runs is smaller than the assignment's
    gaps: Callable[[str, str], list[Missing]] | None = None  # (root, command) -> what else is missing, and why
    figure_number: Callable[[str], int | None] = lambda path: None  # the assignment's number of a figure
    also: tuple[str, ...] = ()  # other folders the task writes figures into (shown in this section too)
    hint: str = ""  # added to the list of missing results (e.g. where the course's data is)


def recorded_path(root: str, key: str, path: str | None) -> str:
    """A path a part's data file records (e.g. topk.json's checkpoint), shown root-relative: a relative one is
    relative to the part's folder `<root>/<key>` (results written since the paths became portable), an absolute
    one (older results) as committed (its `.partial` working names dropped)."""

    if not path:
        return "n/a"
    return under_root(root, committed_path(path) if os.path.isabs(path) else
                      os.path.normpath(os.path.join(root, key, path)))


def fixed_caption(text: str) -> Callable[[str], str]:
    """A caption that does not depend on the figure's path."""
    return lambda path: text


def shrunk_parts(config: dict, epochs: int | None, defaults: dict) -> str | None:
    """'2 epochs instead of 25, first 1000 training examples instead of all' when the run's flat `config` (and
    the `epochs` it ran) is smaller than the assignment's `defaults` (a config's to_dict()); else None."""
    parts = []
    ran = epochs if epochs is not None else config.get("epochs")
    if ran is not None and ran < defaults["epochs"]:
        parts.append(f"{ran} epoch{'' if ran == 1 else 's'} instead of {defaults['epochs']}")
    if config.get("limit") is not None and config.get("limit") != defaults.get("limit"):
        parts.append(f"first {config['limit']} training examples instead of all")
    return ", ".join(parts) or None


def shrunk_text(label: str, config: dict, epochs: int | None, defaults: dict) -> str | None:
    """'`lenet`: 2 epochs instead of 25, ...' (see `shrunk_parts`), or None for a run of the full size."""
    parts = shrunk_parts(config, epochs, defaults)
    return f"{label}: {parts}" if parts else None


# ---------------------------------------------------------------------------------------------- reading


def files_under(root: str, folder: str = "", depth: int = MAX_DEPTH, skip: tuple[str, ...] = ()) -> list[str]:
    """The regular files under `root`/`folder` (root-relative paths, sorted) at most `depth` levels below it:
    no link is followed (`folder` itself is skipped when it is one), hidden names, SKIP_DIRS and folders ending
    in a suffix of `skip` are left out, and the walk stops, with a note, after MAX_ENTRIES entries."""
    top = os.path.join(root, folder) if folder else root
    if folder and (os.path.islink(top) or not os.path.isdir(top)):
        return []
    found, stack, budget = [], [(top, 1)], MAX_ENTRIES
    while stack and budget > 0:
        where, level = stack.pop()
        try:
            with os.scandir(where) as it:
                entries = list(itertools.islice(it, budget))  # a folder of millions is read only so far
        except OSError:
            continue
        budget -= len(entries)
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                if level < depth and e.name not in SKIP_DIRS and not (skip and e.name.endswith(skip)):
                    stack.append((e.path, level + 1))
            elif e.is_file(follow_symlinks=False):
                found.append(os.path.relpath(e.path, root))
    if budget <= 0:
        _note(f"note: the report read only the first {MAX_ENTRIES} entries under {top}")
    return sorted(found)


@functools.cache
def _note(line: str) -> None:
    """Prints `line` on stderr once per process (a folder is walked several times for one report)."""
    print(line, file=sys.stderr)


def _size(path: str) -> float:
    """The file's size in bytes (infinite when it is gone)."""
    try:
        return os.lstat(path).st_size
    except OSError:
        return float("inf")


def _matches(rel: str, pattern: str) -> bool:
    """`rel` matches the glob `pattern` component by component ('*' never crosses a '/', as in glob)."""
    parts, wanted = rel.split(os.sep), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def is_present(root: str, section: Section) -> bool:
    """Whether a regular file inside the part's folder matches one of its `required` globs."""
    depth = max((p.count("/") + 1 for p in section.required), default=1)
    return any(_matches(os.path.relpath(rel, section.key), pattern)
               for rel in files_under(root, section.key, depth) for pattern in section.required)


def discover_figures(root: str, section: Section) -> list[Figure]:
    """Every PNG inside the section's folders (checkpoints, links and files over MAX_FIGURE_BYTES excluded),
    known captions first, in caption order, each with the assignment's figure number where it has one."""
    figures = []
    for folder in (section.key,) + section.also:
        for rel in files_under(root, folder):
            if not rel.endswith(".png") or _size(os.path.join(root, rel)) > MAX_FIGURE_BYTES:
                continue
            order, caption = caption_for(section, rel)
            figures.append((order, natural_key(rel), Figure(rel, caption, assignment=section.figure_number(rel))))
    return [f for _, _, f in sorted(figures, key=lambda t: (t[0], t[1]))]


def caption_for(section: Section, rel: str) -> tuple[int, str]:
    """(rank of the first matching known pattern, caption); unknown figures rank last with a generic caption."""
    for i, (pattern, caption) in enumerate(section.captions):
        if fnmatch.fnmatch(rel, pattern):
            return i, caption(rel)
    return len(section.captions), generic_caption(rel)


def generic_caption(rel: str) -> str:
    """'deconv/sub/fig_top_k_grid.png' -> 'Top k grid (sub).' (the part's own folder left out)."""
    stem = os.path.splitext(os.path.basename(rel))[0]
    stem = re.sub(r"^fig\d*_", "", stem).replace("_", " ").strip() or stem
    where = os.sep.join(rel.split(os.sep)[1:-1])
    text = stem[:1].upper() + stem[1:] + (f" ({where})" if where else "") + "."
    return text.replace("`", BACKTICK)  # a backtick of a file name is shown, never taken for code


def under_root(root: str, path: str | None) -> str:
    """`path` relative to the results root, with a trailing '/', when it lies inside it (a checkpoint the chain
    trained), else as it is; its backticks as `document.BACKTICK`, so that it stays one code span between the
    backticks its callers put around it."""
    absroot = os.path.abspath(root)
    if path and os.path.abspath(path).startswith(absroot + os.sep):
        path = os.path.relpath(os.path.abspath(path), absroot) + "/"
    return str(path).replace("`", BACKTICK)


def run_folders(root: str) -> list[str]:
    """Every folder inside `root` that holds a finished run's metrics.json (root-relative, natural order; no
    link followed, unfinished `.partial` folders left out)."""
    found = [os.path.dirname(rel) or "." for rel in files_under(root, skip=(".partial",))
             if os.path.basename(rel) == METRICS_JSON]
    return sorted(found, key=natural_key)


def read_inside(root: str, rel: str) -> dict | None:
    """The JSON object at `root`/`rel` when it is a regular file inside `root` (see read_json), else None."""
    path = os.path.join(root, rel)
    return read_json(path) if regular_file_inside(root, path) else None


# ------------------------------------------------------------------------------------------------ build


def section_blocks(root: str, section: Section, command: str) -> tuple[list[Block], list[Missing]]:
    """The blocks of one section (heading, text, data files, figures, missing) and what is missing from it."""
    head: list[Block] = [Heading(section.title, section.anchor)] + section.blocks(root)
    folder = os.path.join(root, section.key)
    if not is_present(root, section):
        note = (f"`{section.key}/` is a link, which the report does not follow: it reads only what is inside the "
                "results folder" if os.path.islink(folder) else
                f"an unfinished run is in `{section.key}.partial/`: the same command resumes it"
                if os.path.isdir(folder + ".partial") else "the task was not run")
        missing = [Missing(f"{section.title}: no results in `{section.key}/`", command, note)]
        return head + missing, missing
    figures = discover_figures(root, section)
    found = {os.path.relpath(f.path, section.key) for f in figures}
    missing = [Missing(f"{section.title}: figure `{section.key}/{name}`", command, "the task did not write it")
               for name in section.expected if name not in found]
    missing += section.gaps(root, command) if section.gaps else []
    data_files = [p for p in files_under(root, section.key, depth=1) if p.endswith((".json", ".csv", ".md"))]
    if data_files:
        head.append(Para("Data: " + ", ".join(code(p) for p in data_files) + "."))
    return head + figures + missing, missing


def run_kind(root: str, sections: Sequence[Section]) -> tuple[str, list[str]]:
    """('full' | 'quick (shrunk)' | 'nothing run', how each shrunk run is smaller) over the present parts."""
    present = [s for s in sections if is_present(root, s)]
    reasons = [r for s in present if s.shrunk for r in s.shrunk(root)]
    if not present:
        return "nothing run", []
    return ("quick (shrunk)" if reasons else "full"), reasons


def kind_blocks(root: str, sections: Sequence[Section]) -> list[Block]:
    """The first lines of the page: the kind of run, its seeds and data, and how to read it."""
    kind, reasons = run_kind(root, sections)
    metrics = [read_json(os.path.join(root, f, METRICS_JSON)) or {} for f in run_folders(root)]
    seeds = sorted({len(m.get("seeds") or [0]) for m in metrics})
    # Deduplicated as shown: runs that recorded one folder by an absolute and a relative path list it once
    data = sorted({relative_paths(m["data_source"], root) for m in metrics if m.get("data_source")})
    seed_text = " or ".join(f"{n} seed{'s' if n > 1 else ''}" for n in seeds) or "no run"
    seed_text += " per configuration" if seeds else ""
    lines = [f"Kind of run: **{kind}**; {seed_text}; data: " + (", ".join(f"`{d}`" for d in data) or "none")
             + (" (how it is shrunk: below the table)." if reasons else ".")]
    if reasons:
        lines.append("Shrunk (smaller than the assignment's settings, so no claim is judged and every verdict reads "
                     f"\u201c{NOT_JUDGED}\u201d; the numbers are still shown): " + "; ".join(reasons) + ".")
    elif kind == "full":
        lines.append("Every part present ran with the assignment's settings, so its claims are judged: a verdict "
                     f"compares the {INTERVAL_RULE} of the measured value over the seeds with the assignment's "
                     f"number (one seed: the value itself, said so); a comparison of two measured quantities needs "
                     f"N \u2265 {MIN_SEEDS} seeds on both sides and names the N it used.")
    if seeds and min(seeds) == 1:  # on top, beside the kind of run: how to read every comparison below
        lines[0] += (f" One seed: no comparison is judged (each reads \u201c{ONE_SEED}\u201d); the numbers are "
                     "still shown.")
    if 2 in seeds:
        lines[0] += (" Two seeds: every 95% t-interval is wide by nature (t(0.975, 1) = 12.7, so mean \u00b1 "
                     "9 std), and only large differences separate.")
    return [Para(line, "lead") for line in lines]


def headline_blocks(root: str, sections: Sequence[Section], command_for: CommandFor,
                    reference: dict | None = None) -> list[Block]:
    """The headline table: one line per claim of the assignment, in section order, each linked to its section
    and figure; with `reference` (the published full run), its numbers beside each line, labelled."""
    rows = [claim_row(c, s.anchor, reference) for s in sections if s.claims
            for c in s.claims(root, command_for(s.key))]
    headers = HEADLINE_HEADERS + ([f"{REFERENCE_HEADER} (commit {reference.get('commit', '?')}, "
                                   f"{reference.get('seeds', '?')} seed(s), {reference.get('machine', '?')})"]
                                  if reference else [])
    return [Heading("Claims of the assignment, measured", "summary"),
            Table(headers, rows,
                  "Measured: mean \u00b1 sample std over the seeds, then the 95% Student-t interval of the mean, "
                  "clipped to what the quantity can be (an accuracy: 0 to 1) and said so; with one seed the value "
                  "itself, no interval. Verdict against a number of the assignment: consistent when that interval "
                  "(one seed: the value) overlaps it (a point such as 'about 0.60' counts within \u00b10.02), "
                  "below/above when it lies wholly on one side. A comparison of two measured quantities needs "
                  f"N \u2265 {MIN_SEEDS} seeds on both sides: supported or not supported only when the two "
                  "intervals do not overlap, and its verdict names the N. Training times are compared over the "
                  "epochs after the first." + (f" {REFERENCE_HEADER.capitalize()}: the numbers and verdicts of the "
                                               f"project's published full run ({reference_label(reference)}), "
                                               "to compare this run with." if reference else "")
                  + " Commands, machine and times are under \u201cHow these results were made\u201d.")]


def reference_for(root: str, sections: Sequence[Section]) -> dict | None:
    """The published full run (`read_reference`) when this run is shrunk or has fewer seeds than it, so its
    numbers have something to be compared with; else None (the published report itself shows none)."""
    ref = read_reference()
    if not ref:
        return None
    seeds = [len(m.get("seeds") or [0]) for m in (read_json(os.path.join(root, f, METRICS_JSON)) or {}
                                                  for f in run_folders(root))]
    fewer = bool(seeds) and min(seeds) < int(ref.get("seeds") or 0)
    return ref if fewer or run_kind(root, sections)[0] != "full" else None


def missing_blocks(root: str, sections: Sequence[Section], missing: list[Missing]) -> list[Block]:
    if not missing:
        return []
    hints = "; ".join(s.hint for s in sections if s.hint)
    return [Heading("Missing results", "missing"),
            Para(f"{len(missing)} result(s) are missing from this folder; each line says why and gives the "
                 "command that makes it" + (f" ({hints})" if hints else "") + ".")] + missing


def build_report(root: str, sections: Sequence[Section], command_for: CommandFor, *,
                 reference: str = "") -> tuple[list[Block], list[Missing]]:
    """All the report's blocks, in order (kind of run, headline, missing, how it was made, then one section
    per entry of `sections`), figures numbered; and the missing results (each also shown in its section)."""
    body, missing = [], []
    for section in sections:
        blocks, miss = section_blocks(root, section, command_for(section.key))
        body += blocks
        missing += miss
    where = f" (`{reference}`)" if reference else ""
    meta = Para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from the results folder "
                f"{code(os.path.basename(os.path.abspath(root)))}; the assignment's report{where} is quoted beside "
                "each measured number. " + results_note(root), "meta")
    kind = kind_blocks(root, sections)  # the kind of run on top; how it was shrunk below the headline
    head = kind[:1] + headline_blocks(root, sections, command_for, reference_for(root, sections)) + kind[1:] + [meta]
    head += missing_blocks(root, sections, missing)
    return number_figures(head + provenance_blocks(root) + body), missing


# ------------------------------------------------------------------------------------------- provenance


def provenance_blocks(root: str) -> list[Block]:
    """How the results were made: versions and machine, the commands of `--task all` with the environment
    each needs, and every run's times on their named bases."""
    info = read_inside(root, RUN_ALL_JSON) or {}
    folders = run_folders(root)
    if not info and not folders:
        return []
    first = read_json(os.path.join(root, folders[0], METRICS_JSON)) if folders else {}
    env = info.get("environment") or (first or {}).get("environment")
    blocks: list[Block] = [Heading("How these results were made", "made"),
                           Para(f"Machine: {machine(env)}. Versions: {versions_text(env)}.")]
    if info:
        tasks = [t for t in info.get("tasks") or [] if isinstance(t, dict)] if isinstance(info.get("tasks"), list) \
            else []  # a damaged run_all.json shows what it can
        rows = [[str(t.get("task")), Cell(str(t.get("status")), "" if t.get("status") == "ok" else "missing"),
                 Cell(fmt_seconds(_seconds(t.get("seconds"))), "num"),
                 Cell(code(command_line({"command": str(t.get("command") or ""), "environment": env})), "small")]
                for t in tasks]
        blocks.append(Table(["task", "status", "task time (the whole command)", "command"], rows,
                            f"{code(command_line({**info, 'command': str(info.get('command') or '')}))}: "
                            f"{fmt_seconds(_seconds(info.get('wall_seconds')))} in all, finished "
                            f"{info.get('finished_at')}. Task time: everything the command did (loading data, "
                            "compiling, training, evaluating, figures)."))
    if folders:
        blocks.append(runs_table(root, folders))
    return blocks


def _seconds(value) -> float | None:
    return value if isinstance(value, (int, float)) else None


def runs_table(root: str, folders: list[str]) -> Table:
    """One line per training run: seeds, its times on their bases, wall time, when it finished."""
    rows = []
    for folder in folders:
        m = read_json(os.path.join(root, folder, METRICS_JSON)) or {}
        t = run_timing(os.path.join(root, folder), m)
        seeds = m.get("seeds") or [m.get("config", {}).get("seed")]
        rows.append([code(folder), ", ".join(map(str, seeds)), Cell(fmt_train_time(t), "small"),
                     Cell("n/a" if t is None else f"{t.epoch_seconds:.2f} s", "num"), Cell(fmt_images(t), "small"),
                     Cell(fmt_seconds(m.get("wall_seconds")), "num"), Cell(m.get("finished_at", "n/a"), "small")])
    return Table(["run", "seed(s)", f"{TRAIN_TIME} (basis)", f"{EPOCH_TIME} (same epochs)",
                  f"{IMAGES_PER_SEC} (same epochs)", "wall time of the run", "finished"], rows,
                 f"Every training run. {TRAIN_TIME}: training only, evaluation left out, the median over the epochs "
                 "after the first (whose first steps compile); a run of one epoch has only that epoch, compilation "
                 f"included, and says so. Several seeds train together as one vmapped model: {IMAGES_PER_SEC} is "
                 f"given per model and for all of them. Wall time of the run: {RUN_WALL}.")


def write_report(root: str, sections: Sequence[Section], command_for: CommandFor, *, title: str = DEFAULT_TITLE,
                 reference: str = "") -> tuple[int, list[Missing]]:
    """Writes <root>/report.html (figures embedded, each a link to its file) and <root>/REPORT.md (figures
    linked relative to it), each atomically (`write_page`: a file there that this project did not write is
    kept), with no absolute path of this machine; returns (number of figures, missing results)."""
    blocks, missing = build_report(root, sections, command_for, reference=reference)
    blocks = relative_blocks(blocks, root)
    kind = run_kind(root, sections)[0]
    title += {"quick (shrunk)": " (quick, shrunk run)", "nothing run": " (nothing run yet)"}.get(kind, "")
    write_page(os.path.join(root, MD_NAME), to_markdown(blocks, title))
    write_page(os.path.join(root, HTML_NAME), to_html(blocks, title, root))
    return sum(isinstance(b, Figure) for b in blocks), missing


# The last line of each page the report writes: what tells a page of ours, unchanged, from a user's file.
STAMP = "<!-- written by elec576-jax --task report; sha256 of the text above: {} -->\n"
_STAMP = re.compile(rb"<!-- written by elec576-jax --task report; sha256 of the text above: ([0-9a-f]{64}) -->\n")
MAX_PAGE_BYTES = 1 << 30  # a larger file at a page's name is not read, only moved aside


def stamped(text: str) -> bytes:
    """`text` as UTF-8 (ending with a newline) with STAMP, the digest of those bytes, as its last line."""
    payload = text.encode("utf-8")
    payload += b"" if payload.endswith(b"\n") else b"\n"
    return payload + STAMP.format(hashlib.sha256(payload).hexdigest()).encode("ascii")


def written_by_report(path: str) -> bool:
    """Whether `path` is a page `write_page` wrote, unchanged since: a regular file (not a link) whose last
    line is STAMP with the digest of everything above it."""
    f = open_regular(path)
    if f is None:
        return False
    with f:
        if os.fstat(f.fileno()).st_size > MAX_PAGE_BYTES:
            return False
        payload = f.read()
    cut = payload.rfind(b"\n", 0, len(payload) - 1) + 1  # where the last line begins
    stamp = _STAMP.fullmatch(payload, cut)
    return bool(stamp) and hashlib.sha256(payload[:cut]).hexdigest() == stamp.group(1).decode()


def write_page(path: str, text: str) -> str | None:
    """Writes `text`, stamped, to `path` atomically. Whatever is there and is not a page of ours unchanged (a
    user's REPORT.md, a page edited since, a link) is first renamed to `<path>.replaced-<time>`, with a note;
    returns that name (None when nothing was moved)."""
    aside = None
    if os.path.lexists(path) and not written_by_report(path):
        aside = unused_name(f"{path}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, aside)
        except OSError as e:
            raise UserError(f"cannot move {path} aside to keep it ({e.strerror}); it was not replaced") from None
        print(f"note: {path} was not written by --task report (or was changed since): it is kept as {aside}",
              file=sys.stderr)
    atomic_write_bytes(path, stamped(text))
    return aside


def relative_blocks(blocks: list[Block], root: str) -> list[Block]:
    """The blocks with `relative_paths` applied to every text (figure files are already root-relative)."""
    rel = lambda text: relative_paths(text, root)  # noqa: E731

    def cell(c: CellLike) -> CellLike:
        return Cell(rel(c.text), c.css) if isinstance(c, Cell) else rel(str(c))

    out = []
    for b in blocks:
        if isinstance(b, (Heading, Para)):
            b = dataclasses.replace(b, text=rel(b.text))
        elif isinstance(b, Table):
            b = Table([rel(h) for h in b.headers], [[cell(c) for c in row] for row in b.rows], rel(b.caption))
        elif isinstance(b, Figure):
            b = dataclasses.replace(b, caption=rel(b.caption))
        elif isinstance(b, Missing):
            b = Missing(rel(b.what), rel(b.command), rel(b.note))
        out.append(b)
    return out


def run(args, sections: Sequence[Section], command_for: CommandFor, *, title: str = DEFAULT_TITLE,
        reference: str = "") -> int:
    """`--task report --out ROOT` (default `results`): write_report, then one line on stdout per outcome."""
    root = args.out or "results"
    if not os.path.isdir(root):
        folders = ", ".join(f"{s.key}/" for s in sections[:2])
        raise UserError(f"no results folder {root!r}: run the tasks first, or point --out at the folder that "
                        f"holds {folders}, ...")
    n_fig, missing = write_report(root, sections, command_for, title=title, reference=reference)
    print(f"report: {n_fig} figures in {os.path.join(root, HTML_NAME)} and {os.path.join(root, MD_NAME)}")
    if missing:
        print(f"report: {len(missing)} missing result(s) listed with the commands that make them")
    return 0
