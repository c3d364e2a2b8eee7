"""`--task ablation`: which of the report's ten LeNet5 settings carry its ~60%? Each changed alone, over seeds.

The baseline is the report's configuration (`LeNetConfig()`); each variant changes one of its ten settings
(`VARIANTS`). Variants that differ only in values the training state carries (learning rate, L2 weights) train
in one program with the baseline (the member `shared`, one model per (variant, seed), see `plan`); the others
train as programs of their own, each in its member folder. The "more epochs" variant is the baseline's config
trained twice as long, read from the same runs' history at E and 2E epochs: with a constant learning rate
nothing in the first E epochs depends on the total, so epochs 1..E of these runs are an E-epoch run
(tests/test_ablation.py checks this), and its effect pairs each run with itself. Every number is the
best-validation epoch within the epochs read (`select`), as for `--task lenet`.

Effects are paired by seed: variant minus baseline for the same seed (the same initial key and the same
per-epoch permutation of the training data), mean and 95% Student-t interval over the N pairs
(`common.core.stats.t_interval`). Verdicts follow the report's rules: "matters" when the interval excludes 0, "no
effect shown" when it does not; a shrunk run or one seed judges nothing.

The sweep is one unit (as `recurrent.train.sweep`): it works in `<out>.partial/`, keeps every member finished
there (or in an earlier `<out>`) with the same config on the same data, trains the members asked for that are
missing (a killed member resumes from its last epoch), and replaces `<out>` only when they are done. A narrower
rerun (`--variants`) keeps the finished members it does not name; a member of other settings is moved aside,
never deleted.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from common import data as data_lib
from common import report
from common.core.config import as_tuple
from common.core.errors import UserError
from common.core.state import ModelSpec
from common.report import document
from common.run import results
from common.runtime import distributed, outputs
from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate

ABLATION_JSON = "ablation.json"
ABLATION_CSV = "ablation.csv"
ABLATION_MD = "ablation.md"
FOREST_FIGURE = "fig_forest.png"
OUTPUT_FILES = (ABLATION_JSON, ABLATION_CSV, ABLATION_MD, FOREST_FIGURE)
BASELINE = "baseline"
SHARED = "shared"  # the member folder of the baseline's program (with the variants its state carries)
METRICS = (("val", "validation"), ("test", "test"))
DEFAULT_SEEDS = 3
TRAIN_CLAIM_LEVEL = 0.80  # "the maximum training accuracy achievable was above 80% when training for more than 25"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One setting of the report changed alone."""

    name: str  # its id and, when it trains alone, its member folder
    setting: str  # which of the report's ten settings
    changes: dict  # the flat LeNetConfig fields it sets ({}: the baseline's config, trained horizon x longer)
    carried: bool = False  # differs only in values the state carries: trains in the baseline's program
    horizon: int = 1  # > 1: the baseline's config trained horizon x its epochs, paired with its own first E


VARIANTS = (
    Variant("glorot_uniform", "weight initialisation", {"kernel_init": "glorot_uniform"}),
    Variant("bias_zero", "bias initialisation", {"bias_init": 0.0}),
    Variant("lr_1e-3", "learning rate", {"lr": 1e-3}, carried=True),
    Variant("lr_5e-5", "learning rate", {"lr": 5e-5}, carried=True),
    Variant("adam", "optimizer", {"optimizer": "adam"}),
    Variant("dropout_rate_0.5", "dropout on fc1", {"dropout_rate": 0.5}),
    Variant("no_dropout", "dropout on fc1", {"dropout_rate": 0.0}),
    Variant("epochs_2x", "epochs", {}, horizon=2),
    Variant("batch_128", "batch size", {"batch_size": 128}),
    Variant("no_batchnorm", "batch norm", {"use_batchnorm": False}),
    Variant("bn_after_pool", "batch norm", {"bn_position": "after_pool"}),
    Variant("conv_l2_0", "L2 on the conv kernels", {"conv_l2": 0.0}, carried=True),
    Variant("fc_l2_0", "L2 on fc1", {"fc_l2": 0.0}, carried=True),
)
SETTINGS = tuple(dict.fromkeys(v.setting for v in VARIANTS))  # the ten, in the report's order
BY_NAME = {v.name: v for v in VARIANTS}

# What the ablation could not vary, and why (shown in the report's section).
NOT_VARIED = (
    "Interactions: each variant changes one setting of the report's configuration; which settings matter "
    "together is not measured (a full grid of the ten would be 2^10 programs).",
    "One alternative per setting (two for the learning rate, dropout and batch norm): 'no effect shown' says that "
    "this alternative did not move the accuracy detectably with these seeds, not that no value would.",
    "Keras's Nadam: the report's Keras Nadam has a momentum schedule (schedule_decay) that optax's nadam does not; "
    "both Nadam and Adam here are optax's.",
    "Dropout as a model axis: flax's Dropout takes its rate as a Python number, so each rate is a program of its "
    "own rather than a value the state carries.",
    "More epochs pairs each 50-epoch run with itself read up to epoch 25 (a constant learning rate makes that "
    "a 25-epoch run), not with the baseline's program: the baseline's config trains twice, and only the runs "
    "that need 50 epochs run them.",
    "Pairing where the variant changes it: Glorot uniform draws other weights from the same key, and batch 128 "
    "groups the same per-epoch permutation into other batches; these pairs share the seed, not the weights or "
    "batches.",
    "The data format (the course's 28x28 grayscale CIFAR10, 10% held out for validation) and the architecture "
    "(filter counts, kernel sizes, fc width): fixed by the assignment, not among its ten settings.",
)


def value_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(variant: Variant, base: LeNetConfig) -> str:
    """'learning rate 0.001 instead of 0.00017' from the variant's changes and the baseline's values."""
    if variant.horizon > 1:
        return (f"the best epoch of {base.train.epochs * variant.horizon} instead of {base.train.epochs} "
                "(the same runs, read longer)")
    flat = base.to_dict() | {k: getattr(base, k, None) for k in ("kernel_init", "optimizer", "bn_position")}
    field = {"use_batchnorm": "batch norm", "bn_position": "batch norm", "dropout_rate": "fraction of fc1 dropped",
             "kernel_init": "kernels", "bias_init": "biases", "lr": "learning rate", "batch_size": "batch",
             "conv_l2": "L2 weight on the conv kernels", "fc_l2": "L2 weight on fc1"}
    parts = []
    for k, v in variant.changes.items():
        old = flat[k] if k != "use_batchnorm" else base.bn_position
        new = "none" if k == "use_batchnorm" else value_text(v)
        parts.append(f"{field.get(k, k)} {new} instead of {value_text(old)}".replace("_", " "))
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------------ the plan


@dataclasses.dataclass(frozen=True)
class Program:
    """One member of the sweep: a program of models trained together."""

    member: str
    config: LeNetConfig
    specs: tuple[ModelSpec, ...] | None  # None: the config's own seeds (one program like `--task lenet`)

    @property
    def recorded(self) -> dict:
        """The config recorded in the member's metrics.json (and compared to keep it)."""
        out = self.config.to_dict()
        if self.specs is not None:
            out["ablation_models"] = [dataclasses.asdict(s) for s in self.specs]
        return out


def seeds_of(base: LeNetConfig) -> list[int]:
    return [base.train.seed + i for i in range(base.train.seeds)]


def carried_variants() -> list[Variant]:
    return [v for v in VARIANTS if v.carried]


def plan(base: LeNetConfig) -> dict[str, Program]:
    """Every member: the baseline's program (the baseline then each carried variant, seeds inner) and one
    program per variant that changes the model, the optimizer, the batches or the epochs."""
    weights = {k: float(as_tuple(getattr(base, k))[0]) for k in ("conv_l2", "fc_l2")}
    specs = []
    for v in [None] + carried_variants():
        changes = v.changes if v else {}
        lr = float(changes.get("lr", as_tuple(base.train.lr)[0]))
        penalty = {k: float(changes.get(k, w)) for k, w in weights.items()}
        specs += [ModelSpec(seed, lr, penalty) for seed in seeds_of(base)]
    programs = {SHARED: Program(SHARED, base, tuple(specs))}
    for v in VARIANTS:
        if not v.carried:
            changes = v.changes or {"epochs": base.train.epochs * v.horizon}
            programs[v.name] = Program(v.name, base.replace(**changes), None)
    return programs


def where(variant: str, base: LeNetConfig) -> tuple[str, list[int], int]:
    """(member, the models' indices in it, seed order; epochs read) of the baseline or a variant."""
    n = base.train.seeds
    if variant == BASELINE:
        return SHARED, list(range(n)), base.train.epochs
    v = BY_NAME[variant]
    if v.carried:
        k = [c.name for c in carried_variants()].index(v.name) + 1
        return SHARED, list(range(k * n, (k + 1) * n)), base.train.epochs
    return v.name, list(range(n)), base.train.epochs * v.horizon


def parse_variants(text: str | None) -> list[str]:
    """The variants asked for ('all' or None: every one); an unknown name is one UserError."""
    if not text or text == "all":
        return [v.name for v in VARIANTS]
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in BY_NAME]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}; the variants are: {', '.join(BY_NAME)}")
    return names


# ------------------------------------------------------------------------------------------------ the sweep


def finished(folder: str, program: Program, fingerprint: str) -> dict | None:
    """The member's metrics when `folder` holds its finished result, trained with its config on the same data."""
    metrics = results.finished_metrics(folder, program.recorded, fingerprint)
    return metrics if metrics is not None and os.path.isfile(os.path.join(folder, report.HISTORY_CSV)) else None


def gather(run: outputs.RunDir, programs: dict[str, Program], fingerprint: str) -> set[str]:
    """The members already finished: in the working folder, or in an earlier result at `out` (copied in, so a
    narrower rerun keeps them); strays moved aside first. Returns their names."""
    keep = {outputs.PARTIAL_MARKER, *OUTPUT_FILES} | outputs.member_entries(programs)
    strays = [n for n in sorted(os.listdir(run.work)) if n not in keep]
    strays += [m for m in programs if os.path.isdir(run.path(m)) and not finished(run.path(m), programs[m], fingerprint)
               and outputs.read_marker(run.path(m)) is not None]
    outputs.set_aside_strays(run, strays, "other settings or data")  # to <out>.partial.other-<time>/
    done = set()
    for member, program in programs.items():
        if finished(run.path(member), program, fingerprint):
            done.add(member)
        elif not os.path.exists(run.path(member)) and finished(os.path.join(run.final, member), program, fingerprint):
            outputs.copy_result(os.path.join(run.final, member), run.path(member))
            done.add(member)
    return done


def run_ablation(base: LeNetConfig, out: str, names: list[str], progress: bool = True,
                 command: str | None = None) -> dict:
    """Trains the members `names` need that are not finished, then writes ablation.json, the table and the forest
    plot from every finished member, and commits `out`. Returns ablation.json's content."""
    base.validate()
    for k, v in (("lr", base.train.lr), ("conv_l2", base.conv_l2), ("fc_l2", base.fc_l2)):
        if len(as_tuple(v)) > 1:
            raise UserError(f"the ablation's baseline takes one --{k.replace('_', '-')} value, got {v}")
    dataset = data_lib.load_dataset(base.data)
    fingerprint = data_lib.fingerprint(dataset)
    programs = plan(base)
    wanted = [SHARED] + [n for n in names if n in programs]
    run = outputs.RunDir(out, task="ablation", config={"baseline": base.to_dict(), "variants": names})
    try:
        run.open()
        done = gather(run, programs, fingerprint) if distributed.is_writer() else set()
        for member in wanted:
            if member in done:
                print(f"ablation {member}: kept, finished earlier with the same config and data", file=sys.stderr)
                continue
            p = programs[member]
            print(f"ablation {member}: training {len(p.specs or seeds_of(base))} model(s), {p.config.train.epochs} "
                  "epochs", file=sys.stderr, flush=True)
            train_and_evaluate(p.config, run.shared_path(member), dataset, progress, command,
                               specs=list(p.specs) if p.specs else None, recorded=p.recorded)
        result = {}
        if distributed.is_writer():
            result = analyse(run.work, base)
            write_outputs(run.work, result)
        run.commit()
    finally:
        run.release()
    return result


# ------------------------------------------------------------------------------------------------ the numbers


def select(rows: list[dict], epochs: int) -> dict:
    """The best-validation epoch within epochs 1..`epochs` of one model's history (the first best, as
    `common.core.loop.BestEpoch` keeps it) and its accuracies."""
    window = rows[:epochs]
    best = int(np.argmax([r["val_accuracy"] for r in window]))
    r = window[best]
    return {"epoch": int(r["epoch"]), "val_accuracy": r["val_accuracy"], "test_accuracy": r["test_accuracy"],
            "train_accuracy": r["train_accuracy"], "train_running_accuracy": r["train_running_accuracy"]}


def member_histories(folder: str) -> tuple[list[dict], list[list[dict]]]:
    """(the models' specs as recorded, each model's history rows) of a finished member."""
    metrics = outputs.read_json(os.path.join(folder, outputs.METRICS_JSON)) or {}
    return metrics.get("models", []), report.history_by_model(os.path.join(folder, report.HISTORY_CSV))


def per_seed(root: str, variant: str, base: LeNetConfig, epochs: int | None = None) -> list[dict] | None:
    """Each seed's selected numbers of the baseline or a variant, read up to `epochs` (default: its own); None
    when its member is not there. A longer run's rows also carry the highest running training accuracy after
    the baseline's epochs (for the claim about training past them)."""
    member, indices, read = where(variant, base)
    epochs = epochs or read
    if outputs.read_marker(os.path.join(root, member)) is None:
        return None
    models, histories = member_histories(os.path.join(root, member))
    if len(histories) <= max(indices) or len(models) <= max(indices):
        return None
    out = []
    for i in indices:
        rows = histories[i]
        row = {"seed": int(models[i]["seed"]), **select(rows, epochs)}
        if epochs > base.train.epochs and len(rows) > base.train.epochs:
            row["max_running_accuracy_after"] = max(r["train_running_accuracy"] for r in rows[base.train.epochs:])
        out.append(row)
    return out


def paired(base: list[dict], variant: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(seeds, variant minus baseline) over the seeds both have, in seed order: pairs by seed, not position."""
    b = {r["seed"]: r[key] for r in base}
    v = {r["seed"]: r[key] for r in variant}
    seeds = sorted(b.keys() & v.keys())
    return seeds, [float(v[s]) - float(b[s]) for s in seeds]


def not_judged(shrunk: bool, n: int) -> str | None:
    """The report's rule for every verdict here: why nothing is judged (a shrunk run, one seed), else None."""
    return report.NOT_JUDGED if shrunk else report.ONE_SEED if n < report.MIN_SEEDS else None


def judge(estimate: report.Estimate, shrunk: bool) -> str:
    """'matters' when the 95% interval excludes 0, 'no effect shown' when it holds 0 (or `not_judged`)."""
    return not_judged(shrunk, estimate.n) or ("matters" if estimate.low > 0 or estimate.high < 0
                                              else "no effect shown")


def effect(base: list[dict], variant: list[dict], key: str, shrunk: bool) -> dict:
    seeds, diffs = paired(base, variant, key)
    if not diffs:
        return {"seeds": [], "differences": [], "n": 0, "verdict": "missing"}
    e = report.aggregate(diffs)
    return {"seeds": seeds, "differences": diffs, "n": e.n, "mean": e.mean, "std": e.std, "low": e.low,
            "high": e.high, "verdict": judge(e, shrunk)}


def shrunk_text(base: LeNetConfig) -> str | None:
    return report.shrunk_parts(base.to_dict(), base.train.epochs, LeNetConfig().to_dict())


def claims(variants: dict, effects: dict, shrunk: bool) -> dict:
    """The assignment's two claims about its settings, from the same runs: past its epochs the training accuracy
    rises above 80% but validation and test accuracy do not improve; batch norm helps."""
    out = {}
    longer = variants.get("epochs_2x", {}).get("per_seed", [])
    after = [r["max_running_accuracy_after"] for r in longer if "max_running_accuracy_after" in r]
    more = effects.get("epochs_2x", {}).get("test")
    if after and more and more["n"]:
        train = report.aggregate(after)
        rises = train.low > TRAIN_CLAIM_LEVEL
        no_gain = not more["low"] > 0
        verdict = not_judged(shrunk, train.n) or ("supported" if rises and no_gain else "not supported")
        out["past_epochs"] = {
            "claim": "training past the report's epochs raises the training accuracy above 80% but not the "
                     "validation or test accuracy",
            "max_running_accuracy_after": {"values": list(train.values), "mean": train.mean, "low": train.low,
                                           "high": train.high},
            "test_gain": more, "validation_gain": effects["epochs_2x"]["val"],
            "note": "the validation gain cannot be negative (the longer window includes the shorter one's best "
                    "epoch), so the test gain decides",
            "verdict": verdict}
    bn = effects.get("no_batchnorm", {}).get("test")
    if bn and bn["n"]:
        e = report.aggregate(bn["differences"])
        verdict = not_judged(shrunk, e.n) or ("supported" if e.high < 0 else "contradicted" if e.low > 0
                                              else "no effect shown")
        out["batch_norm"] = {"claim": "batch norm helps (removing it lowers the test accuracy)", "test_effect": bn,
                             "validation_effect": effects["no_batchnorm"]["val"], "verdict": verdict}
    return out


def analyse(root: str, base: LeNetConfig) -> dict:
    """ablation.json's content from the finished members under `root`: per-seed numbers of the baseline and every
    variant present, the paired effects, the two claims."""
    shrunk = shrunk_text(base)
    base_rows = per_seed(root, BASELINE, base)
    if base_rows is None:
        raise UserError(f"the baseline's program is missing from {root}")
    variants = {BASELINE: {"setting": "", "description": "the report's configuration", "per_seed": base_rows,
                           "member": SHARED, "epochs_read": base.train.epochs}}
    effects = {}
    for v in VARIANTS:
        rows = per_seed(root, v.name, base)
        if rows is None:
            continue
        member, _, epochs = where(v.name, base)
        variants[v.name] = {"setting": v.setting, "description": describe(v, base), "per_seed": rows,
                            "member": member, "epochs_read": epochs}
        reference = base_rows
        if v.horizon > 1:  # its own runs read up to the baseline's epochs: each run paired with itself
            reference = per_seed(root, v.name, base, epochs=base.train.epochs)
            variants[v.name]["paired_with"] = {"description": f"the same runs read up to epoch {base.train.epochs}",
                                               "per_seed": reference}
        effects[v.name] = {m: effect(reference, rows, f"{m}_accuracy", bool(shrunk)) for m, _ in METRICS}
    return {
        "baseline": base.to_dict() | {k: getattr(base, k) for k in ("kernel_init", "optimizer", "bn_position")},
        "seeds": seeds_of(base), "epochs": base.train.epochs, "shrunk": shrunk,
        "interval": report.INTERVAL_RULE,
        "pairing": "variant minus baseline, same seed (a variant with paired_with: minus those numbers instead)",
        "rule": "matters: the 95% interval excludes 0; no effect shown: it holds 0; shrunk runs and one seed: "
                "not judged",
        "variants": variants, "effects": effects, "claims": claims(variants, effects, bool(shrunk)),
        "missing": [v.name for v in VARIANTS if v.name not in variants], "not_varied": list(NOT_VARIED),
        "environment": outputs.environment_info(),
    }


# ------------------------------------------------------------------------------------------------ the outputs


def fmt_effect(e: dict | None) -> str:
    """'-0.0123 [-0.0300, +0.0054]' (one pair: the value alone)."""
    if not e or not e.get("n"):
        return "missing"
    if e["n"] == 1:
        return f"{e['mean']:+.4f} (one seed)"
    return f"{e['mean']:+.4f} [{e['low']:+.4f}, {e['high']:+.4f}]"


TABLE_HEADERS = ["setting", "variant", "pairs", "validation: variant \u2212 baseline (95% interval)", "verdict",
                 "test: variant \u2212 baseline (95% interval)", "verdict"]


def table_rows(result: dict) -> list[list[str]]:
    rows = []
    for name, effect_ in result["effects"].items():
        v = result["variants"][name]
        rows.append([v["setting"], f"{name}: {v['description']}", str(effect_["test"]["n"]),
                     fmt_effect(effect_["val"]), effect_["val"]["verdict"], fmt_effect(effect_["test"]),
                     effect_["test"]["verdict"]])
    return rows


def csv_rows(result: dict) -> list[dict]:
    """One row per variant and seed: its selected numbers and those it is paired with (`paired_*`), so that each
    effect recomputes from the CSV alone."""
    base = result["variants"][BASELINE]["per_seed"]
    rows = []
    for name, v in result["variants"].items():
        reference = {r["seed"]: r for r in v.get("paired_with", {"per_seed": base})["per_seed"]}
        for r in v["per_seed"]:
            paired = {} if name == BASELINE else {f"paired_{m}_accuracy": reference.get(r["seed"], {}).get(
                f"{m}_accuracy") for m, _ in METRICS}
            rows.append({"variant": name, "setting": v["setting"], **r, **paired})
    return rows


def write_outputs(folder: str, result: dict) -> None:
    """ablation.json, ablation.csv (one row per variant and seed), ablation.md (the effects) and the forest plot."""
    outputs.atomic_write_json(os.path.join(folder, ABLATION_JSON), result)
    outputs.write_csv(os.path.join(folder, ABLATION_CSV), csv_rows(result))
    table = document.markdown_table(TABLE_HEADERS, table_rows(result))
    outputs.atomic_write_text(os.path.join(folder, ABLATION_MD), table + "\n")
    plot_forest(result, os.path.join(folder, FOREST_FIGURE))


def plot_forest(result: dict, path: str) -> str:
    """One row per variant, grouped by setting: the paired effect on validation and on test accuracy with its
    95% interval, zero marked; filled markers where the verdict is 'matters'."""
    from common.report import plotting

    plt = plotting.plt
    names = [v.name for v in VARIANTS if v.name in result["effects"]]
    ys, labels, groups, y = {}, [], [], 0.0
    for setting in SETTINGS:
        members = [n for n in names if BY_NAME[n].setting == setting]
        if not members:
            continue
        groups.append((y, setting))
        y -= 0.9
        for n in members:
            ys[n] = y
            labels.append((y, n))
            y -= 1.0
        y -= 0.3
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(12, 1.6 + 0.36 * max(1, -y)))
    for ax, (metric, title) in zip(axes, METRICS):
        for n in names:
            e = result["effects"][n][metric]
            if not e.get("n"):
                continue
            matters = e["verdict"] == "matters"
            color = "#c0392b" if matters else "#2c3e50"
            ax.errorbar(e["mean"], ys[n], xerr=[[e["mean"] - e["low"]], [e["high"] - e["mean"]]], fmt="o",
                        color=color, mfc=color if matters else "white", capsize=3, lw=1.4)
        ax.axvline(0.0, color="black", lw=0.9)
        ax.set_xlabel(f"{title} accuracy: variant \u2212 baseline (same seed)")
        ax.grid(axis="x", alpha=0.3)
        for gy, _ in groups:
            ax.axhline(gy + 0.45, color="#bbbbbb", lw=0.6)
    axes[0].set_yticks([ly for ly, _ in labels] + [gy for gy, _ in groups])
    axes[0].set_yticklabels([n for _, n in labels] + [s.upper() for _, s in groups], fontsize=8)
    for tick in axes[0].get_yticklabels()[len(labels):]:
        tick.set_fontweight("bold")
    axes[0].set_ylim(y + 0.5, 0.6)
    n = len(result["seeds"])
    fig.suptitle(f"Which of the report's settings matter: each changed alone, {n} seed{'s' * (n != 1)} "
                 f"(mean, 95% t-interval; filled: interval excludes 0)"
                 + (f"\nshrunk run ({result['shrunk']}): not judged" if result.get("shrunk") else ""), fontsize=10)
    fig.tight_layout()
    return plotting.save(fig, path)
