"""`--task report`: every result under a results root gathered into one report.html and REPORT.md.

The root holds one folder per task (`<root>/<Section.key>/`, plus run_all.json when `--task all` made it).
What a task's part of the report says is its experiment package's business: each package describes its part
as a `Section` (title, the files that show the part was run, the figures it makes with their captions, its
text and tables, its rows of the headline table). This module knows no experiment: it takes the sections, in
the order to show them, and `command_for(key)`, the command that makes the part `key` under the root.

The report is built once as a list of blocks (common.document) and rendered twice. Figures are found by
globbing each part's folders, so a new figure shows up without a change here; known names get their part's
caption, others a generic one. A part that has not been run is listed as missing with the command that
makes it.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
import re
import time
from collections.abc import Callable, Sequence

from common.document import (
    Block,
    Cell,
    CellLike,
    Figure,
    Heading,
    Missing,
    Para,
    Table,
    natural_key,
    number_figures,
    to_html,
    to_markdown,
)
from common.errors import UserError
from common.outputs import atomic_write_text, read_json
from common.provenance import (  # noqa: F401
    PROVENANCE_HEADERS,
    command_line,
    fmt_acc,
    fmt_lr,
    fmt_seconds,
    machine,
    path_base,
    provenance,
    relative_paths,
    settings,
    settings_cell,
)

HTML_NAME = "report.html"
MD_NAME = "REPORT.md"
RUN_ALL_JSON = "run_all.json"  # written by `--task all` into the root; read here for "How these results were made"
SKIP_DIRS = ("checkpoint",)  # model weights, never figures of the report
DEFAULT_TITLE = "Results"

CommandFor = Callable[[str], str]  # a section's key -> the full command that makes that part under the root


# ---------------------------------------------------------------------------------------------- contract


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
INTERVAL_RULE = "mean \u00b1 2\u00b7std/\u221aN"  # how `aggregate` draws its interval (std: sample, ddof=1)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A measured quantity over N seeds: mean, sample std, the interval mean +- 2 std/sqrt(N), the values."""

    mean: float
    std: float
    low: float
    high: float
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)


def aggregate(values) -> Estimate:
    """Mean, sample std (ddof=1; 0 for one value) and the interval INTERVAL_RULE of per-seed values."""
    v = [float(x) for x in (values if isinstance(values, (list, tuple)) else [values])]
    mean = sum(v) / len(v)
    std = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
    half = 2 * std / len(v) ** 0.5
    return Estimate(mean, std, mean - half, mean + half, tuple(v))


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
    """The Estimate of metrics[key] from its `<key>_per_model` values (one value when N = 1)."""
    if not metrics or metrics.get(key) is None:
        return None
    return aggregate(metrics.get(f"{key}_per_model") or [metrics[key]])


def fmt_estimate(estimate: Estimate | None, per_seed: bool = True) -> str:
    """'0.6012' (N = 1) or '0.6012 \u00b1 0.0040 (3 seeds: 0.5970, 0.6010, 0.6050)'."""
    if estimate is None:
        return "n/a"
    if estimate.n == 1:
        return fmt_acc(estimate.mean)
    values = ": " + ", ".join(f"{v:.4f}" for v in estimate.values) if per_seed else ""
    return f"{estimate.mean:.4f} \u00b1 {estimate.std:.4f} ({estimate.n} seeds{values})"


def verdict_line(estimate: Estimate | None, target: Target) -> str:
    """'consistent: 0.598-0.606 (mean ± 2·std/√N, 3 seeds) overlaps the assignment's 0.580-0.620', or with
    N = 1 the point value."""
    word = verdict(estimate, target)
    if word == "n/a":
        return word
    lo, hi = target_band(target)
    wanted = f"{lo:.3f}" if lo == hi else f"{lo:.3f}-{hi:.3f}"
    measured = (f"{estimate.mean:.3f} (1 seed)" if estimate.n == 1 else
                f"{estimate.low:.3f}-{estimate.high:.3f} ({INTERVAL_RULE}, {estimate.n} seeds)")
    relation = {"consistent": "overlaps", "below": "is below", "above": "is above"}[word]
    return f"{word}: {measured} {relation} the assignment's {wanted}"


@dataclasses.dataclass(frozen=True)
class Section:
    """One part of the report, filled in by the experiment package whose task makes it.

    Paths in `captions` are relative to the results root ('lenet/fig1_curves.png'); `required` and `expected`
    are relative to the part's folder `<root>/<key>`."""

    key: str  # the task name = its folder under the results root
    title: str
    anchor: str  # HTML id of the section's heading
    required: tuple[str, ...]  # the part is present when any of these globs exists in root/key
    expected: tuple[str, ...]  # figures the task makes; absent ones are listed as missing
    captions: tuple[tuple[str, Callable[[str], str]], ...]  # (glob on the root-relative path, caption(path))
    blocks: Callable[[str], list[Block]]  # root -> the section's text and tables (also shown when missing)
    summary: Callable[[str, str], list[list[CellLike]]] | None = None  # (root, command) -> headline-table rows
    also: tuple[str, ...] = ()  # other folders the task writes figures into (shown in this section too)
    hint: str = ""  # added to the list of missing results (e.g. where the course's data is)


def fixed_caption(text: str) -> Callable[[str], str]:
    """A caption that does not depend on the figure's path."""
    return lambda path: text


SUMMARY_HEADERS = ["part", "experiment", "train acc (eval mode)", "val acc", "test acc (best-validation epoch)",
                   "assignment", "test vs assignment (verdict)", "settings", *PROVENANCE_HEADERS]


def estimate_cell(metrics: dict | None, key: str, per_seed: bool = False) -> Cell:
    """metrics[key] as 'mean \u00b1 std (N seeds)' (just the value when N = 1), right-aligned."""
    return Cell(fmt_estimate(estimate_of(metrics, key), per_seed), "num")


def summary_row(part: str, name: str, folder: str, metrics: dict | None, target: Target, default_epochs: int,
                command: str) -> list[CellLike]:
    """One row of the headline table (SUMMARY_HEADERS) for the run whose metrics.json is `metrics`; a 'missing'
    row naming `command` when there is none."""
    if metrics is None:
        return [part, name, *[Cell("missing", "missing")] * 3, target.text, "n/a",
                Cell(f"missing: run `{command}`", "missing"), "", "", "", ""]
    test = estimate_of(metrics, "test_accuracy")
    return [part, f"{name} (`{folder}`)", estimate_cell(metrics, "train_accuracy"),
            estimate_cell(metrics, "val_accuracy"), estimate_cell(metrics, "test_accuracy", per_seed=True),
            target.text, Cell(verdict_line(test, target), "small"),
            settings_cell(metrics, default_epochs), *provenance(metrics)]


# ---------------------------------------------------------------------------------------------- reading


def is_present(root: str, section: Section) -> bool:
    folder = os.path.join(root, section.key)
    return any(glob.glob(os.path.join(folder, pattern)) for pattern in section.required)


def discover_figures(root: str, section: Section) -> list[Figure]:
    """Every PNG under the section's folders (checkpoints excluded), known captions first, in caption order.

    Figures of sub-runs (one per configuration) and of the `also` folders are shown half size."""
    figures = []
    for folder in (section.key,) + section.also:
        for path in glob.glob(os.path.join(root, folder, "**", "*.png"), recursive=True):
            rel = os.path.relpath(path, root)
            if any(d in SKIP_DIRS for d in rel.split(os.sep)[:-1]):
                continue
            order, caption = caption_for(section, rel)
            half = folder != section.key or rel.count(os.sep) > 1
            figures.append((order, natural_key(rel), Figure(rel, caption, half=half)))
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
    return stem[:1].upper() + stem[1:] + (f" ({where})" if where else "") + "."


# ------------------------------------------------------------------------------------------------ build


def section_blocks(root: str, section: Section, command: str) -> tuple[list[Block], list[Missing]]:
    """The blocks of one section (heading, text, data files, figures, missing) and what is missing from it."""
    head: list[Block] = [Heading(section.title, section.anchor)] + section.blocks(root)
    folder = os.path.join(root, section.key)
    if not is_present(root, section):
        note = (f"an unfinished run is in `{section.key}.partial/`: the same command resumes it"
                if os.path.isdir(folder + ".partial") else "")
        missing = [Missing(f"{section.title}: no results in `{section.key}/`", command, note)]
        return head + missing, missing
    figures = discover_figures(root, section)
    found = {os.path.relpath(f.path, section.key) for f in figures}
    missing = [Missing(f"{section.title}: figure `{section.key}/{name}`", command)
               for name in section.expected if name not in found]
    data_files = sorted(os.path.relpath(p, root) for ext in ("json", "csv", "md")
                        for p in glob.glob(os.path.join(folder, f"*.{ext}")))
    if data_files:
        head.append(Para("Data: " + ", ".join(f"`{p}`" for p in data_files) + "."))
    return head + figures + missing, missing


def run_all_blocks(root: str) -> list[Block]:
    """How `--task all` made this folder, when it did (RUN_ALL_JSON): each task's status, time and command."""
    info = read_json(os.path.join(root, RUN_ALL_JSON))
    if not info:
        return []
    rows = [[t["task"], Cell(t["status"], "" if t["status"] == "ok" else "missing"),
             Cell(fmt_seconds(t.get("seconds")), "num"), Cell(f"`{t.get('command', '')}`", "small")]
            for t in info.get("tasks", [])]
    return [Heading("How these results were made", "made"),
            Table(["task", "status", "time", "command"], rows,
                  f"`{info.get('command')}` on {machine(info.get('environment'))}: "
                  f"{fmt_seconds(info.get('wall_seconds'))} in all, finished {info.get('finished_at')}.")]


def head_blocks(root: str, sections: Sequence[Section], command_for: CommandFor, missing: list[Missing],
                reference: str = "") -> list[Block]:
    """What comes before the sections: when and from where, the headline table, the list of missing results."""
    where = f" (`{reference}`)" if reference else ""
    rows = [row for s in sections if s.summary for row in s.summary(root, command_for(s.key))]
    head: list[Block] = [
        Para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from the results folder "
             f"`{os.path.basename(os.path.abspath(root))}`; paths are relative to "
             + ("the repository, where the commands run" if path_base(root) == os.getcwd()
                else "the results folder") + ". Each measured "
             f"number sits beside the assignment's{where}, with the command, seed(s), machine and time that "
             "produced it; with several seeds, as mean \u00b1 std (sample std) and a verdict on the interval "
             f"{INTERVAL_RULE}.", "meta"),
        Heading("Measured against the assignment", "summary"),
        Table(SUMMARY_HEADERS, rows),
    ]
    if missing:
        hints = "; ".join(s.hint for s in sections if s.hint)
        head += [Heading("Missing results", "missing"),
                 Para(f"{len(missing)} result(s) are not in `{root}`; each line gives the command that makes it"
                      + (f" ({hints})" if hints else "") + ".")] + missing
    return head


def build_report(root: str, sections: Sequence[Section], command_for: CommandFor, *,
                 reference: str = "") -> tuple[list[Block], list[Missing]]:
    """All the report's blocks, in order (meta line, headline table, missing list, how it was made, then one
    section per entry of `sections`), figures numbered; and the missing results (each also shown in its
    section). `reference` names the assignment's text in the meta line."""
    body, missing = [], []
    for section in sections:
        blocks, miss = section_blocks(root, section, command_for(section.key))
        body += blocks
        missing += miss
    head = head_blocks(root, sections, command_for, missing, reference)
    return number_figures(head + run_all_blocks(root) + body), missing


def write_report(root: str, sections: Sequence[Section], command_for: CommandFor, *, title: str = DEFAULT_TITLE,
                 reference: str = "") -> tuple[int, list[Missing]]:
    """Writes <root>/report.html (figures embedded) and <root>/REPORT.md (figures linked), each atomically;
    returns (number of figures, missing results)."""
    blocks, missing = build_report(root, sections, command_for, reference=reference)
    atomic_write_text(os.path.join(root, MD_NAME), relative_paths(to_markdown(blocks, title), root))
    atomic_write_text(os.path.join(root, HTML_NAME), relative_paths(to_html(blocks, title, root), root))
    return sum(isinstance(b, Figure) for b in blocks), missing


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
