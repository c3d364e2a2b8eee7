"""The report's section "Beyond the assignment: which settings matter" (`--task ablation`), from ablation.json."""
from __future__ import annotations

import os

from common.report import NOT_JUDGED, Claim, Section, fixed_caption
from common.report.document import Block, Cell, Para, Table
from common.runtime.outputs import read_json
from lenet.ablation import ABLATION_JSON, FOREST_FIGURE, TABLE_HEADERS, fmt_effect, table_rows

ABLATION_KEY = "ablation"


def ablation_result(root: str) -> dict | None:
    return read_json(os.path.join(root, ABLATION_KEY, ABLATION_JSON))


def ablation_blocks(root: str) -> list[Block]:
    """What was varied and how it is judged, the effects table, the two claims, what could not be varied."""
    blocks: list[Block] = [Para(
        "The assignment lists ten settings that gave about 60% but not which of them matter. Here each is changed "
        "alone from the report's configuration (the baseline), with the same seeds; an effect is the variant's "
        "accuracy minus the baseline's for the same seed (same initial key and data order), its mean and 95% "
        "Student-t interval over the seeds. Verdict: 'matters' when the interval excludes 0, 'no effect shown' "
        "when it holds 0; a shrunk run or one seed judges nothing. Each number is the best-validation epoch's.")]
    r = ablation_result(root)
    if not r:
        return blocks
    n = len(r.get("seeds", []))
    epochs = r.get("epochs")
    shrunk = f" \u2014 shrunk ({r['shrunk']}): {NOT_JUDGED}." if r.get("shrunk") else "."
    blocks.append(Para(f"This run: {n} seed{'s' * (n != 1)} ({', '.join(map(str, r.get('seeds', [])))}), baseline "
                       f"{epochs} epoch{'s' * (epochs != 1)}" + shrunk, "finding" if r.get("shrunk") else ""))
    rows = [[row[0], row[1], Cell(row[2], "num"), Cell(row[3], "num"), Cell(row[4], "small"),
             Cell(row[5], "num"), Cell(row[6], "small")] for row in table_rows(r)]
    blocks.append(Table(TABLE_HEADERS, rows, "Paired effects of each setting, variant minus baseline, in accuracy."))
    for c in r.get("claims", {}).values():
        blocks.append(Para(f"Claim: {c['claim']} \u2014 {c['verdict']}."))
    if r.get("missing"):
        blocks.append(Para("Not in this run: " + ", ".join(r["missing"]) + " (`--variants` chose others)."))
    blocks.append(Para("What it could not vary, and why: " + " ".join(f"({i}) {t}" for i, t in
                                                                   enumerate(r.get("not_varied", []), 1))))
    return blocks


def ablation_claims(root: str, command: str) -> list[Claim]:
    """The assignment's claims about its settings (past 25 epochs; batch norm), judged from the ablation."""
    r = ablation_result(root)
    if not r:
        return []
    out = []
    past = r.get("claims", {}).get("past_epochs")
    if past:
        t = past["max_running_accuracy_after"]
        epochs, longer = r.get("epochs"), r["variants"]["epochs_2x"]["epochs_read"]
        out.append(Claim("1b", f"training past {epochs} epochs: training accuracy above 80%, validation and test "
                         "not improved", f"max running train accuracy over epochs {epochs + 1}-{longer} "
                         f"{t['mean']:.4f} [{t['low']:.4f}, {t['high']:.4f}]; "
                         f"test gain {fmt_effect(past['test_gain'])}",
                         "above 80%, no gain", past["verdict"]))
    bn = r.get("claims", {}).get("batch_norm")
    if bn:
        out.append(Claim("1b", "batch norm helps (ablation: without it)",
                         f"test accuracy without minus with {fmt_effect(bn['test_effect'])}", "helps",
                         bn["verdict"]))
    return out


def ablation_shrunk(root: str) -> list[str]:
    r = ablation_result(root)
    return [f"`{ABLATION_KEY}`: {r['shrunk']}"] if r and r.get("shrunk") else []


ABLATION_SECTION = Section(
    key=ABLATION_KEY, title="Beyond the assignment: which settings matter", anchor="ablation",
    required=(ABLATION_JSON,), expected=(FOREST_FIGURE,),
    captions=((f"{ABLATION_KEY}/{FOREST_FIGURE}", fixed_caption(
        "Each of the report's settings changed alone: the accuracy of the variant minus the baseline's for the same "
        "seed, mean and 95% Student-t interval, on validation (left) and test (right); rows grouped by setting; "
        "filled markers: the interval excludes 0.")),),
    blocks=ablation_blocks, claims=ablation_claims, shrunk=ablation_shrunk)
