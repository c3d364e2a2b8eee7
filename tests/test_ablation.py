"""`--task ablation` (lenet/ablation.py): the plan, the pairing, the effect arithmetic against numpy/scipy, the verdict
rules, the outputs from finished members; slow: the same initial weights where the variant allows, the epochs
claim, the longer runs begin as the shared baseline, a killed sweep resumed, the task end to end."""
import csv
import json
import os
import shutil

import jax
import numpy as np
import pytest
from scipy import stats as sps

from common import report
from common.core.errors import UserError
from common.core.state import ModelSpec, init_states
from common.runtime import outputs
from lenet import ablation
from lenet.config import KNOBS, LeNetConfig
from lenet.model import create_model

TINY = dict(features=(4, 8), hidden=16, eval_batch_size=64)


# ------------------------------------------------------------------------------------------------ the plan


def test_every_one_of_the_ten_settings_is_changed_alone():
    assert len(ablation.SETTINGS) == 10
    base = LeNetConfig.create(seeds=3)
    programs = ablation.plan(base)
    flat = base.to_dict() | KNOBS
    for v in ablation.VARIANTS:
        member, indices, epochs = ablation.where(v.name, base)
        assert len(indices) == 3
        if v.carried:  # trains in the baseline's program: only its own model's rate or weight differs
            assert member == ablation.SHARED and epochs == 25
            def values(i):
                spec = programs[member].specs[i]
                return {"lr": spec.lr, **spec.penalty}

            base_values = values(ablation.where(ablation.BASELINE, base)[1][0])
            mine = values(indices[0])
            assert {k for k in mine if mine[k] != base_values[k]} == set(v.changes), v.name
            assert all(mine[k] == x for k, x in v.changes.items())
        elif v.changes:
            config = programs[member].config
            changed = {k for k, x in (config.to_dict() | {k: getattr(config, k) for k in KNOBS}).items()
                       if x != flat[k]}
            assert changed == set(v.changes), v.name
            assert epochs == 25
        else:  # more epochs: the baseline's config trained twice as long, read at 25 and 50
            config = programs[member].config
            assert (member, epochs) == ("epochs_2x", 50) and config == base.replace(epochs=50)
    shared = programs[ablation.SHARED]
    assert shared.config.train.epochs == 25 and len(shared.specs) == 3 * 5  # baseline + 4 carried, 3 seeds each
    assert [s.seed for s in shared.specs[:3]] == [0, 1, 2]
    assert shared.specs[0] == ModelSpec(0, 1.7e-4, {"conv_l2": 0.01, "fc_l2": 0.005})
    # every model of the shared program belongs to exactly one of the baseline and the carried variants
    used = sorted(i for n in [ablation.BASELINE] + [v.name for v in ablation.carried_variants()]
                  for i in ablation.where(n, base)[1])
    assert used == list(range(15))


def test_config_knobs_default_to_the_report_and_record_as_before():
    c = LeNetConfig()
    assert (c.kernel_init, c.optimizer, c.bn_position, c.dropout_rate) == ("glorot_normal", "nadam", "before_pool", 0.8)
    assert not set(KNOBS) & set(c.to_dict())  # runs and results made before these fields still compare equal
    assert LeNetConfig.create(optimizer="adam").to_dict()["optimizer"] == "adam"
    assert LeNetConfig.from_dict(LeNetConfig.create(bn_position="after_pool").to_dict()).bn_position == "after_pool"
    for bad in ({"optimizer": "sgd"}, {"kernel_init": "he"}, {"bn_position": "middle"}):
        with pytest.raises(UserError):
            LeNetConfig.create(**bad).validate()
    with pytest.raises(UserError, match="unknown variant 'nope'"):
        ablation.parse_variants("adam,nope")
    assert ablation.parse_variants(None) == [v.name for v in ablation.VARIANTS]


def _init(config, seed=0):
    state, _ = init_states(create_model(config), (1, 28, 28, 1), [ModelSpec(seed, 1e-3)], config.optimizer)
    return jax.tree_util.tree_map(lambda x: np.asarray(x[0]), state)


@pytest.mark.slow  # ten initialisations, each compiled: 9 s
def test_same_seed_same_initial_weights_where_the_variant_allows():
    base = LeNetConfig.create(**TINY)
    b = _init(base)
    for changes in ({"bias_init": 0.0}, {"optimizer": "adam"}, {"dropout_rate": 0.0}, {"batch_size": 128},
                    {"use_batchnorm": False}, {"bn_position": "after_pool"}):
        v = _init(base.replace(**changes))
        for layer in ("conv1", "conv2", "fc1", "fc2"):
            np.testing.assert_array_equal(v.params[layer]["kernel"], b.params[layer]["kernel"], err_msg=str(changes))
    assert np.all(_init(base.replace(bias_init=0.0)).params["conv1"]["bias"] == 0)
    assert np.all(b.params["conv1"]["bias"] == np.float32(0.1))
    uniform = _init(base.replace(kernel_init="glorot_uniform")).params["conv1"]["kernel"]
    assert not np.allclose(uniform, b.params["conv1"]["kernel"])  # other weights from the same key
    limit = np.sqrt(6 / (25 * 1 + 25 * 4))  # Glorot uniform's bound for a 5x5x1->4 kernel
    assert np.abs(uniform).max() <= limit and np.abs(uniform).max() > 0.8 * limit
    adam = _init(base.replace(optimizer="adam")).opt_state
    assert "nu" in str(adam) and float(np.asarray(adam.hyperparams["learning_rate"])) == pytest.approx(1e-3)


def test_batch_norm_after_pooling_normalises_the_pooled_maps():
    x = np.random.default_rng(0).random((8, 28, 28, 1), np.float32)
    pooled = {}
    for position in ("before_pool", "after_pool"):
        model = create_model(LeNetConfig.create(**TINY, bn_position=position))

        @jax.jit  # one compile each, not one per operation (an eager init and apply took 8 s)
        def sown_maps(x):
            variables = model.init(jax.random.PRNGKey(0), x[:1], train=False)
            return model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)},
                               mutable=["intermediates", "batch_stats"])[1]

        sown = sown_maps(x)
        pooled[position] = np.asarray(sown["intermediates"]["conv1_pool"][0])
        assert pooled[position].shape == (8, 14, 14, 4)
    # batch norm (scale 1, offset 0 at init) last: each pooled channel has mean 0; pooling last: the max of
    # normalised values, above 0
    np.testing.assert_allclose(pooled["after_pool"].mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    assert np.all(pooled["before_pool"].mean(axis=(0, 1, 2)) > 0.1)


# ------------------------------------------------------------------------------------------------ the numbers


def test_pairing_is_by_seed_not_position():
    base = [{"seed": 0, "a": 0.5}, {"seed": 1, "a": 0.6}, {"seed": 2, "a": 0.7}]
    variant = [{"seed": 2, "a": 0.9}, {"seed": 0, "a": 0.4}]  # another order, one seed missing
    seeds, diffs = ablation.paired(base, variant, "a")
    assert seeds == [0, 2] and diffs == pytest.approx([-0.1, 0.2])


@pytest.mark.parametrize("n", [2, 3, 5])
def test_effect_arithmetic_against_numpy_and_scipy(n):
    rng = np.random.default_rng(n)
    seeds = list(rng.permutation(10)[:n])
    base = [{"seed": int(s), "val_accuracy": float(rng.random())} for s in seeds]
    variant = [{"seed": int(s), "val_accuracy": float(rng.random())} for s in reversed(seeds)]
    e = ablation.effect(base, variant, "val_accuracy", shrunk=False)
    b = {r["seed"]: r["val_accuracy"] for r in base}
    d = np.array([r["val_accuracy"] - b[r["seed"]] for r in sorted(variant, key=lambda r: r["seed"])])
    half = sps.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
    assert e["differences"] == pytest.approx(d.tolist()) and e["n"] == n
    assert e["mean"] == pytest.approx(d.mean()) and e["std"] == pytest.approx(d.std(ddof=1))
    assert (e["low"], e["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    lo, hi = sps.t.interval(0.95, n - 1, loc=d.mean(), scale=sps.sem(d))
    assert (e["low"], e["high"]) == pytest.approx((lo, hi))


def test_verdicts_follow_the_report_rules():
    def est(values):
        return report.aggregate(values)

    assert ablation.judge(est([0.05, 0.06, 0.07]), shrunk=False) == "matters"
    assert ablation.judge(est([-0.05, -0.06, -0.07]), shrunk=False) == "matters"
    assert ablation.judge(est([-0.05, 0.06, 0.01]), shrunk=False) == "no effect shown"
    assert ablation.judge(est([0.05]), shrunk=False) == report.ONE_SEED  # the report's rule and words
    assert ablation.judge(est([0.05, 0.06, 0.07]), shrunk=True) == report.NOT_JUDGED


def test_select_reads_the_best_validation_epoch_within_the_window():
    rows = [{"epoch": e, "val_accuracy": v, "test_accuracy": t, "train_accuracy": 0.0, "train_running_accuracy": 0.0}
            for e, v, t in [(1, 0.3, 0.31), (2, 0.5, 0.52), (3, 0.5, 0.40), (4, 0.6, 0.55)]]
    assert ablation.select(rows, 2)["epoch"] == 2
    assert ablation.select(rows, 3)["test_accuracy"] == 0.52  # a tie keeps the first best, as BestEpoch does
    assert ablation.select(rows, 4)["epoch"] == 4


# ------------------------------------------------------------------------------------------------ from members


def _fake_member(folder, program, models, rng, epochs):
    """A finished member as fit leaves it: marker, metrics.json (config, models), history.csv (one row per model
    and epoch), with random accuracies."""
    os.makedirs(folder)
    rows = []
    for e in range(1, epochs + 1):
        for m in models:
            rows.append({"epoch": e, "seed": m.seed, "lr": m.lr, **{k: float(rng.random()) for k in (
                "train_accuracy", "train_running_accuracy", "val_accuracy", "test_accuracy")}})
    outputs.write_csv(os.path.join(folder, "history.csv"), rows)
    outputs.atomic_write_json(os.path.join(folder, "metrics.json"), {
        "config": program.recorded, "models": [{"seed": m.seed, "lr": m.lr, "penalty": m.penalty} for m in models],
        "data_fingerprint": "f"})
    outputs.atomic_write_json(os.path.join(folder, outputs.MARKER), {"project": outputs.PROJECT, "kind": "result",
                                                                     "task": "lenet"})


def _fake_ablation(root, base, skip=()):
    rng = np.random.default_rng(0)
    for member, program in ablation.plan(base).items():
        if member in skip:
            continue
        models = list(program.specs) if program.specs else [ModelSpec(s, 1e-3) for s in ablation.seeds_of(base)]
        _fake_member(os.path.join(root, member), program, models, rng, program.config.train.epochs)


def test_outputs_from_finished_members_recompute_from_the_per_seed_numbers(tmp_path):
    base = LeNetConfig.create(seeds=3, epochs=4)
    root = str(tmp_path)
    _fake_ablation(root, base, skip=("adam",))
    result = json.loads(json.dumps(ablation.analyse(root, base),
                                   default=outputs.jsonable))
    ablation.write_outputs(root, result)
    assert result["missing"] == ["adam"] and "adam" not in result["effects"]
    assert set(result["effects"]) == {v.name for v in ablation.VARIANTS} - {"adam"}
    base_rows = result["variants"]["baseline"]["per_seed"]
    with open(os.path.join(root, ablation.ABLATION_CSV)) as f:
        table_rows = list(csv.DictReader(f))
    assert len(table_rows) == 3 * (len(ablation.VARIANTS) - 1 + 1)
    for name, effects in result["effects"].items():
        variant = result["variants"][name]
        reference = variant.get("paired_with", {"per_seed": base_rows})["per_seed"]
        for metric in ("val", "test"):
            d = [r[f"{metric}_accuracy"] - b[f"{metric}_accuracy"] for r, b in zip(variant["per_seed"], reference)]
            assert effects[metric]["mean"] == pytest.approx(np.mean(d))
            assert effects[metric]["verdict"] == report.NOT_JUDGED  # 4 epochs: shrunk
            # the CSV alone recomputes it too: each row holds the numbers it is paired with
            mine = [r for r in table_rows if r["variant"] == name]
            assert np.mean([float(r[f"{metric}_accuracy"]) - float(r[f"paired_{metric}_accuracy"])
                            for r in mine]) == pytest.approx(np.mean(d))
    # the shared program's baseline read up to epoch 4; the longer runs up to 8, paired with themselves up to 4
    longer = result["variants"]["epochs_2x"]
    assert max(r["epoch"] for r in base_rows) <= 4 and longer["epochs_read"] == 8 and longer["member"] == "epochs_2x"
    assert max(r["epoch"] for r in longer["paired_with"]["per_seed"]) <= 4
    assert set(result["claims"]) == {"past_epochs", "batch_norm"}
    after = result["claims"]["past_epochs"]["max_running_accuracy_after"]["values"]
    assert after == [r["max_running_accuracy_after"] for r in longer["per_seed"]] and len(after) == 3
    table = open(os.path.join(root, ablation.ABLATION_MD)).read()
    assert all(f"| {n}: " in table for n in result["effects"]) and "adam:" not in table
    assert open(os.path.join(root, ablation.FOREST_FIGURE), "rb").read(4) == b"\x89PNG"


def test_report_section_lists_effects_claims_and_what_was_not_varied(tmp_path):
    from common.report.document import Table, to_markdown
    from lenet.ablation_report import ABLATION_SECTION, ablation_claims

    base = LeNetConfig.create(seeds=2)
    root = str(tmp_path / "results")
    _fake_ablation(os.path.join(root, "ablation"), base)
    result = ablation.analyse(os.path.join(root, "ablation"), base)
    assert result["shrunk"] is None and all(e["test"]["verdict"] in ("matters", "no effect shown")
                                            for e in result["effects"].values())
    ablation.write_outputs(os.path.join(root, "ablation"), result)
    blocks = ABLATION_SECTION.blocks(root)
    table = next(b for b in blocks if isinstance(b, Table))
    assert len(table.rows) == len(ablation.VARIANTS)
    md = to_markdown(blocks, "T")
    assert "What it could not vary" in md and "Keras's Nadam" in md
    claims = ablation_claims(root, "cmd")
    assert [c.part for c in claims] == ["1b", "1b"] and all(c.verdict for c in claims)
    assert "over epochs 26-50" in claims[0].measured  # the longer runs' epochs past the baseline's


# ------------------------------------------------------------------------------------------------ training


def _tiny_base(folder, **kw):
    return LeNetConfig.create(**{"data_dir": folder, **TINY, "epochs": 1, "seeds": 2, "batch_size": 16, **kw})


@pytest.mark.slow
def test_the_first_epochs_of_a_longer_run_are_the_shorter_run(tmp_path):
    """The claim the epochs variant rests on: with a constant rate, epochs 1..E of a 2E-epoch run are an E-epoch run."""
    from conftest import write_image_folder

    from lenet.train import train_and_evaluate

    folder = write_image_folder(tmp_path / "course", n_train_per_class=8)
    short = train_and_evaluate(_tiny_base(folder, epochs=2), str(tmp_path / "a"), progress=False)
    long = train_and_evaluate(_tiny_base(folder, epochs=4), str(tmp_path / "b"), progress=False)
    for key in ("train_loss", "val_accuracy", "test_accuracy", "train_running_loss"):
        assert [r[key] for r in long.history[:2]] == [r[key] for r in short.history]


@pytest.mark.slow
def test_on_a_cpu_the_longer_runs_begin_as_the_shared_programs_baseline(tmp_path):
    """epochs_2x pairs with its own first E epochs; on a CPU (models unrolled, not vmapped) these are also the
    shared program's baseline models, number for number, so pairing it with the baseline gives the same effect."""
    from conftest import write_image_folder

    from lenet.train import train_and_evaluate

    folder = write_image_folder(tmp_path / "course", n_train_per_class=8)
    programs = ablation.plan(_tiny_base(folder, epochs=2))
    shared, longer = programs[ablation.SHARED], programs["epochs_2x"]
    train_and_evaluate(shared.config, str(tmp_path / ablation.SHARED), progress=False, specs=list(shared.specs),
                       recorded=shared.recorded)
    train_and_evaluate(longer.config, str(tmp_path / "epochs_2x"), progress=False)
    together = report.history_by_model(str(tmp_path / ablation.SHARED / "history.csv"))
    alone = report.history_by_model(str(tmp_path / "epochs_2x" / "history.csv"))
    assert len(together) == 2 * 5 and len(alone) == 2 and len(alone[0]) == 4
    for i in range(2):  # the baseline is the shared program's first N models
        for key in ("train_loss", "val_loss", "val_accuracy", "test_accuracy"):
            assert [r[key] for r in alone[i][:2]] == [r[key] for r in together[i]], key


@pytest.mark.slow
def test_a_killed_ablation_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch):
    from conftest import write_image_folder

    folder = write_image_folder(tmp_path / "course", n_train_per_class=16)  # 144 training images: batch 128 fits
    base = _tiny_base(folder)
    names = ablation.parse_variants(None)
    whole = ablation.run_ablation(base, str(tmp_path / "whole"), names, progress=False)

    out = str(tmp_path / "killed")
    real = ablation.train_and_evaluate

    def killed_at_batch_128(config, workdir, *a, **k):
        if os.path.basename(workdir) == "batch_128":
            raise KeyboardInterrupt
        return real(config, workdir, *a, **k)

    monkeypatch.setattr(ablation, "train_and_evaluate", killed_at_batch_128)
    with pytest.raises(KeyboardInterrupt):
        ablation.run_ablation(base, out, names, progress=False)
    monkeypatch.setattr(ablation, "train_and_evaluate", real)
    partial = out + ".partial"
    assert not os.path.exists(out) and os.path.isdir(os.path.join(partial, "adam"))
    shutil.rmtree(os.path.join(partial, "adam"))  # a member's result lost too: it is trained again
    kept = os.path.getmtime(os.path.join(partial, ablation.SHARED, "metrics.json"))
    resumed = ablation.run_ablation(base, out, names, progress=False)
    assert os.path.getmtime(os.path.join(out, ablation.SHARED, "metrics.json")) == kept  # kept, not retrained
    for name in ("variants", "effects"):
        assert json.dumps(resumed[name], default=outputs.jsonable) == json.dumps(whole[name], default=outputs.jsonable)

    # A narrower rerun trains what it names and keeps every finished member it does not name.
    narrower = ablation.run_ablation(base, out, ["adam"], progress=False)
    assert set(narrower["effects"]) == set(whole["effects"]) and not narrower["missing"]
    assert narrower["variants"] == json.loads(json.dumps(resumed["variants"], default=outputs.jsonable))


@pytest.mark.slow
def test_task_ablation_quick_two_seeds_end_to_end(tmp_path, capsys):
    from conftest import write_image_folder

    from run import main

    folder = write_image_folder(tmp_path / "course", n_train_per_class=16)
    root = str(tmp_path / "results")
    assert main(["--task", "ablation", "--quick", "--seeds", "2", "--data-dir", folder, "--no-progress",
                 "--out", os.path.join(root, "ablation")]) == 0, capsys.readouterr().err[-3000:]
    result = json.load(open(os.path.join(root, "ablation", ablation.ABLATION_JSON)))
    assert set(result["variants"]) == {"baseline"} | {v.name for v in ablation.VARIANTS}
    assert all(len(v["per_seed"]) == 2 for v in result["variants"].values())
    assert {e[m]["verdict"] for e in result["effects"].values() for m in ("val", "test")} == {report.NOT_JUDGED}
    for name in (ablation.FOREST_FIGURE, ablation.ABLATION_CSV, ablation.ABLATION_MD):
        assert os.path.isfile(os.path.join(root, "ablation", name))
    assert main(["--task", "report", "--out", root]) == 0
    md = open(os.path.join(root, "REPORT.md")).read()
    assert '## <a id="ablation"></a>Beyond the assignment: which settings matter' in md and "fig_forest.png" in md
    assert md.count("not judged: shrunk run") >= 2 * len(ablation.VARIANTS)


# ------------------------------------------------------------------------------------------------ the CPU benchmark


def test_sweep_benchmark_splits_the_models_over_the_processes():
    from benchmarks.sweep_cpu import shares

    assert shares(4, 2) == [2, 2] and shares(5, 2) == [3, 2] and shares(1, 2) == [1] and shares(3, 3) == [1, 1, 1]


@pytest.mark.slow
def test_sweep_benchmark_runs_both_ways_on_a_tiny_network(capsys):
    from benchmarks import sweep_cpu

    sweep_cpu.main(["--tiny", "--models", "2", "--processes", "2", "--rounds", "2", "--steps", "2", "--windows", "1"])
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [(x["round"], x["way"]) for x in lines[:4]] == [(0, "one_program"), (0, "per_core"), (1, "per_core"),
                                                           (1, "one_program")]  # alternating order
    assert [x["processes"] for x in lines[:2]] == [1, 2] and all(x["train_images_per_sec"] > 0 for x in lines[:4])
    assert lines[-1]["summary"] and lines[-1]["per_core_over_one_program"] > 0
