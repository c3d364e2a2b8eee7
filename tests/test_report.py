"""Tests for `--task compare`, `--task report` and `--task all`: pure pieces, then the chain end to end on
generated CIFAR10-like images (an image folder) and `tfds.testing.mock_data` MNIST."""
import base64
import glob
import json
import os
import re
import shlex
import shutil
import sys
import types

import pytest

from common import cli, report
from common.cli import run_all
from common.core.errors import UserError
from common.report import document
from deconv.report import DECONV_SECTION
from lenet.report import LENET_SECTION, LENET_TARGET, VISUALIZE_SECTION
from recurrent import compare
from recurrent.config import RNNConfig
from recurrent.report import COMPARE_SECTION, RNN_SECTION
from run import TASKS, main

ORDER = tuple(run_all.chain(TASKS))  # the experiment tasks, in the order `--task all` runs them

# The assignment's sections in report order (the registry's tasks supply the same tuple).
SECTIONS = (LENET_SECTION, VISUALIZE_SECTION, DECONV_SECTION, RNN_SECTION, COMPARE_SECTION)


def parse(argv):
    return cli.parse_args(TASKS, argv)


def task_argv(task, root, quick=False, user=()):
    return run_all.task_argv(TASKS, task, root, quick, list(user))

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pngs(folder):
    """Every PNG under `folder` outside checkpoint folders (what the report must show)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "checkpoint"]
        found += [os.path.relpath(os.path.join(dirpath, f), folder) for f in filenames if f.endswith(".png")]
    return sorted(found)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


# ------------------------------------------------------------------------------------------ pure pieces


def _history(accuracies, seconds):
    return [{"epoch": i + 1, "test_accuracy": a, "train_seconds": s} for i, (a, s) in
            enumerate(zip(accuracies, seconds))]


def test_epochs_and_seconds_to_reach_the_target():
    h = _history([0.90, 0.969, 0.97, 0.99], [10.0, 2.0, 3.0, 4.0])
    assert compare.epochs_to_reach(h, 0.97) == 3  # >= counts, 0.969 does not
    assert compare.epochs_to_reach(h, 0.995) is None
    assert compare.cumulative_train_seconds(h) == [10.0, 12.0, 15.0, 19.0]
    assert compare.steady_train_seconds(h) == 3.0  # the first (compiling) epoch left out
    assert compare.steady_train_seconds(h[:1]) is None  # one epoch: mostly compilation, no steady time
    metrics = {"param_count": 5, "test_accuracy": 0.99, "val_accuracy": 0.98, "train_accuracy": 1.0,
               "epochs": 4, "seconds_per_epoch": 6.0, "wall_seconds": 30.0,
               "config": {"lr": 1e-3, "batch_size": 32}}
    row = compare.comparison_row("LSTM-8", "rnn", "lstm_h8", metrics, h, 0.97)
    assert (row["epochs_to_97"], row["train_seconds_to_97"]) == (3, 15.0)


def test_best_recurrent_reads_the_sweep_then_single_runs_then_falls_back(tmp_path):
    rnn = str(tmp_path / "rnn")
    assert compare.best_recurrent(rnn)[:2] == ("lstm", 128)  # nothing there: the report's best
    for cell, hidden, acc in (("rnn", 64, 0.95), ("gru", 32, 0.97), ("lstm", 16, 0.96)):
        _write_json(os.path.join(rnn, f"{cell}_h{hidden}", "metrics.json"),
                    {"test_accuracy": acc, "val_accuracy": acc, "config": {"cell": cell, "hidden": hidden}})
    assert compare.best_recurrent(rnn)[:2] == ("gru", 32)  # no summary.json: the per-run files
    _write_json(os.path.join(rnn, "summary.json"), {"runs": [
        {"cell": "rnn", "hidden": 16, "test_accuracy": 0.96, "val_accuracy": 0.9},
        {"cell": "lstm", "hidden": 64, "test_accuracy": 0.99, "val_accuracy": 0.97},
        {"cell": "gru", "hidden": 128, "test_accuracy": 0.99, "val_accuracy": 0.98}]})
    cell, hidden, reason = compare.best_recurrent(rnn)
    assert (cell, hidden) == ("gru", 128)  # the tie on test accuracy goes to validation accuracy
    assert "3 recurrent run(s)" in reason


def test_compare_choice_flags():
    assert compare.recurrent_choice(parse(["--task", "compare", "--cell", "gru"]), "/none")[:2] == ("gru", 128)
    assert compare.recurrent_choice(parse(["--task", "compare", "--hidden", "32"]), "/none")[:2] == ("lstm", 32)
    with pytest.raises(UserError, match="one value"):
        compare.recurrent_choice(parse(["--task", "compare", "--cell", "rnn,lstm"]), "/none")


@pytest.mark.parametrize("argv, message", [
    (["--cell", "rnn,gru"], "give --cell one value"),
    (["--lr", "1e-3,3e-3"], "give --lr one value"),
])
def test_compare_bad_flags_exit_2(tmp_path, capsys, argv, message):
    assert main(["--task", "compare", "--out", str(tmp_path / "c")] + argv) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c")


def test_target_difference():
    assert report.Target(0.96, 0.97, "").difference(0.965) == "within"
    assert report.Target(0.96, 0.97, "").difference(0.95) == "-0.010"
    assert report.Target(0.98, 0.99, "").difference(0.9912) == "+0.001"
    assert LENET_TARGET.difference(0.596) == "-0.004"
    assert report.NO_TARGET.difference(0.5) == "n/a"


def test_task_argv_settings_then_user_flags_and_data_dirs_where_they_belong():
    user = ["--task", "all", "--quick", "--epochs", "3", "--data-dir", "/cifar", "--tfds-data-dir", "/tfds",
            "--no-progress", "--cell", "gru"]
    assert [t.split(":")[0] for t in TASKS.paths.values()][:len(ORDER)] == [
        "lenet.task", "lenet.task", "deconv.task", "recurrent.task", "recurrent.task"]
    for task in ORDER:
        argv = task_argv(task, "/r", quick=True, user=user)
        parsed = parse(argv)
        assert parsed.task == task and parsed.out == os.path.join("/r", task)
        assert parsed.progress is False and parsed.tfds_data_dir == "/tfds"
        assert parsed.data_dir == ("/cifar" if task in ("lenet", "visualize", "deconv") else None)
        if task in ("lenet", "rnn", "compare"):
            assert parsed.epochs == 3  # the user's --epochs wins over the quick setting
        if task in ("visualize", "deconv"):
            assert parsed.checkpoint == os.path.join("/r", "lenet")
    rates = ["--task", "all", "--lr", "1e-3,3e-3"]
    assert "--lr" not in task_argv("compare", "/r", user=rates)  # compare sets one model against one
    assert parse(task_argv("rnn", "/r", user=rates)).lr == (1e-3, 3e-3)
    rnn = parse(task_argv("rnn", "/r", quick=True, user=user))
    assert rnn.cell == ("gru",) and rnn.quick and rnn.hidden == (64, 128)
    assert cli.config_from_args(RNNConfig.quick(), rnn).data.limit == 2000  # the quick preset's
    full = parse(task_argv("rnn", "/r"))
    assert full.cell == ("rnn", "lstm", "gru") and full.hidden == (16, 32, 64, 128) and full.epochs is None


def _command_for(root):
    return lambda key: f"python run.py --task {key} --out {root}/{key}"


def test_report_without_results_folder_exits_2(tmp_path):
    args = parse(["--task", "report", "--out", str(tmp_path / "none")])
    with pytest.raises(UserError, match="no results folder") as raised:
        report.run(args, SECTIONS, _command_for(str(tmp_path / "none")))
    assert raised.value.exit_code == 2


def test_a_data_folder_recorded_absolute_and_relative_is_listed_once(tmp_path, monkeypatch):
    """Runs of one results root may record one data folder by either path; the report shows it once, relative."""
    os.makedirs(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")  # where the commands run; the data beside it, as ../shared is
    for run, source in (("a", f"image folder {tmp_path}/shared"), ("b", "image folder ../shared"),
                        ("c", "tfds:mnist")):
        os.makedirs(tmp_path / "results" / run)
        (tmp_path / "results" / run / "metrics.json").write_text(json.dumps({"data_source": source}))
    lead = report.kind_blocks(str(tmp_path / "results"), SECTIONS)[0].text
    assert "data: `image folder ../shared`, `tfds:mnist`." in lead, lead


def test_report_of_an_empty_folder_lists_every_part_missing_with_its_command(tmp_path, capsys):
    root = str(tmp_path / "results")
    os.makedirs(os.path.join(root, "deconv.partial"))  # a run that was killed
    args = parse(["--task", "report", "--out", root])
    assert report.run(args, SECTIONS, _command_for(root)) == 0
    assert "5 missing result(s)" in capsys.readouterr().out
    page, md = _read(os.path.join(root, "report.html")), _read(os.path.join(root, "REPORT.md"))
    for section in SECTIONS:
        command = report.relative_paths(_command_for(root)(section.key), root)  # no absolute path shown
        assert command in md and command in page, section.key
        assert section.title in page
    assert page.count('class="missing-box"') == 2 * len(SECTIONS)  # in the list and in each section
    assert md.count("**Missing:**") == 2 * len(SECTIONS)
    assert "unfinished run is in" in md and "<img" not in page
    # the headline table: a missing line per claim that has no run yet, each with its command
    assert page.count(">missing: run <code>python run.py --task rnn --cell ") == 2  # RNN-64 and LSTM-128
    assert page.count(">missing: run <code>") == 3 + 2 + 1 + 2 + 1  # 1b, 1c, 2, 3a-3b, 3c
    assert "Kind of run: <b>nothing run</b>" in page
    assert not [f for f in os.listdir(root) if ".tmp" in f]  # written atomically, nothing left behind


PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)


def _metrics(**config):
    return {"train_accuracy": 0.8, "val_accuracy": 0.61, "test_accuracy": 0.596, "epochs": 25, "seeds": [0],
            "config": {"batch_size": 50, "lr": 1.7e-4, "epochs": 25, **config}, "command": "run.py --task x",
            "finished_at": "2024-01-01 00:00:00 UTC", "param_count": 1000, "seconds_per_epoch": 2.0}


def _results(root):
    """A results root with a part of every task: lenet and the sweep complete, visualize without Figure 3, an
    unknown figure, a checkpoint figure (never shown), no deconv, the comparison's JSON."""
    files = {"lenet/metrics.json": _metrics(), "lenet/fig1_curves.png": PNG, "lenet/checkpoint/w.png": PNG,
             "visualize/fig2_conv1_filters.png": PNG, "visualize/fig_batchnorm_comparison.png": PNG,
             "visualize/fig_something_new.png": PNG, "lenet_nobn/fig1_curves.png": PNG,
             "rnn/fig_summary.png": PNG, "rnn/fig_validation_by_size.png": PNG,
             "compare/fig_cnn_vs_rnn.png": PNG, "compare/lenet/fig1_curves.png": PNG,
             "compare/lenet/metrics.json": _metrics(), "compare/comparison.json": {"rows": [
                 {"model": "LeNet5", "folder": "lenet", "param_count": 5, "test_accuracy": 0.99,
                  "val_accuracy": 0.98, "train_seconds_per_epoch": 2.0, "epochs_to_97": 2,
                  "train_seconds_to_97": None, "lr": 1e-3, "batch_size": 32, "epochs": 2}]}}
    for cell, hidden in (("rnn", 64), ("lstm", 128), ("lstm", 16)):
        files[f"rnn/{cell}_h{hidden}/metrics.json"] = _metrics(cell=cell, hidden=hidden)
        files[f"rnn/{cell}_h{hidden}/fig_{cell}_h{hidden}.png"] = PNG
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else json.dumps(content).encode())


FIGURE_MD = re.compile(r"\[!\[Figure (\w+)\]\(([^)]+)\)\]\(([^)]+)\)")  # an image that links to its file


def test_report_finds_and_captions_every_figure_once(tmp_path):
    root = str(tmp_path)
    _results(root)
    n_fig, missing = report.write_report(root, SECTIONS, _command_for(root), title="T")
    page, md = _read(os.path.join(root, "report.html")), _read(os.path.join(root, "REPORT.md"))
    found = FIGURE_MD.findall(md)
    shown = [path for _, path, link in found]
    assert all(path == link for _, path, link in found)  # each image is a link to itself, full size
    assert sorted(shown) == _pngs(root) and len(shown) == len(set(shown)) == n_fig  # each once, none skipped
    labels = [label for label, _, _ in found]
    # the assignment's figures keep its numbers (1, 2, 6 = RNN-64, 8 = LSTM-16, 11 = LSTM-128), others S1, S2, ...
    assert [n for n in labels if not n.startswith("S")] == ["1", "2", "6", "8", "11"]
    assert [n for n in labels if n.startswith("S")] == [f"S{i}" for i in range(1, n_fig - 4)]
    assert [n for n in re.findall(r'<figure id="figure-(\w+)"', page)] == labels
    assert "lenet/checkpoint/w.png" not in md
    assert "**Figure 1 (the assignment's).** Accuracy and loss of LeNet5" in md  # lenet first, known caption
    assert "Something new. (`visualize/fig_something_new.png`)" in md  # unknown: the generic caption
    assert "**Figure 8 (the assignment's).** LSTM with 16 hidden units: accuracy and loss against epoch." in md
    assert "LeNet5 on MNIST (same architecture as Part 1b" in md
    # in section order; within a section, known captions in their order before unknown figures
    assert shown.index("visualize/fig2_conv1_filters.png") < shown.index("lenet_nobn/fig1_curves.png") \
        < shown.index("visualize/fig_something_new.png") < shown.index("rnn/fig_summary.png")
    assert shown.index("rnn/lstm_h16/fig_lstm_h16.png") < shown.index("rnn/lstm_h128/fig_lstm_h128.png")
    # what is missing: Figure 3 of Part 1c, all of Part 2, and the assignment's recurrent figures not made
    whats = [m.what for m in missing]
    assert whats[:2] == ["Part 1c: Inside the trained network: figure `visualize/fig3_activations.png`",
                         "Part 2: Visualizing and understanding (deconvnet): no results in `deconv/`"]
    assert [int(re.search(r"Figure (\d+)", w).group(1)) for w in whats[2:]] == [4, 5, 7, 9, 10]
    assert "hidden size 16 was not swept (this sweep: 16, 64, 128)" not in md  # 16 was swept (an LSTM)
    assert "Simple RNN-16 was not run" in md and "hidden size 32 was not swept" in md
    assert md.count("**Missing:**") == 2 * len(missing)


def test_headline_table_has_one_line_per_claim_in_section_order(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REFERENCE_JSON", str(tmp_path / "none.json"))  # no published run to show
    root = str(tmp_path)
    _results(root)
    blocks, _ = report.build_report(root, SECTIONS, _command_for(root))
    table = next(b for b in blocks if isinstance(b, document.Table))
    assert table.headers == report.HEADLINE_HEADERS and len(table.headers) <= 7
    parts = [r[0].split("](")[0].lstrip("[") for r in table.rows]
    assert parts == ["1b", "1b", "1b", "1c", "1c", "2", "3a", "3b", "3b", "3c"][:len(parts)]
    assert table.rows[0][0] == "[1b](#part-1b) ([Fig. 1](#figure-1))"  # linked to its section and figure
    lenet_val = table.rows[0]
    assert lenet_val[2].text == "0.6100 (1 seed); one seed: the point value, no interval"
    assert lenet_val[4].text == ("consistent: 0.610 (one seed: the point value checked against the assignment's "
                                 "band, no interval) lies within the assignment's 0.580 to 0.620")


def test_settings_flag_shrunk_runs():
    text, shrunk = report.settings({"config": {"epochs": 2, "batch_size": 50, "lr": [1e-4, 3e-4], "limit": 9}}, 25)
    assert shrunk and text.startswith("2 epochs, batch 50, lr 0.0001,0.0003, first 9 training examples")
    assert report.settings({"config": {"epochs": 25, "batch_size": 50, "lr": 1e-3}}, 25) == (
        "25 epochs, batch 50, lr 0.001", False)


def test_generic_caption_and_natural_order():
    assert report.generic_caption(os.path.join("deconv", "sub", "fig_top_k_grid.png")) == "Top k grid (sub)."
    assert report.generic_caption(os.path.join("rnn", "fig2_x.png")) == "X."
    assert sorted(["h128", "h16", "h32"], key=document.natural_key) == ["h16", "h32", "h128"]


# ------------------------------------------------------------------------------- orchestration (fakes)


def test_all_goes_on_after_a_failed_task_and_skips_what_needs_it(tmp_path, monkeypatch, capsys):
    """lenet fails with bad input: visualize/deconv are skipped, rnn/compare still run, the report is built,
    the exit code is lenet's 2. The five tasks are stand-ins here; the real chain is tested below."""
    ran = []

    def fake(task, fail=False):
        def run(args):
            ran.append((task, args.out))
            if fail:
                raise UserError(f"{task}: no data")
            return 0
        module = types.ModuleType(f"fake_{task}")
        needs = ("lenet",) if task in ("visualize", "deconv") else ()
        module.TASK = cli.Task(task, "a stand-in", lambda parser: None, run, needs=needs)
        return module

    paths = {}
    for task in ORDER:
        monkeypatch.setitem(sys.modules, f"fake_{task}", fake(task, fail=task == "lenet"))
        paths[task] = f"fake_{task}:TASK"
    registry = cli.Registry({**paths, "report": "common.cli.run_all:REPORT", "all": "common.cli.run_all:ALL"})
    root = str(tmp_path / "r")
    assert cli.main(registry, ["--task", "all", "--out", root]) == 2
    assert [t for t, _ in ran] == ["lenet", "rnn", "compare"]
    status = {t["task"]: t["status"] for t in json.load(open(os.path.join(root, "run_all.json")))["tasks"]}
    assert status["lenet"].startswith("failed") and "no data" in status["lenet"]
    assert status["visualize"] == status["deconv"] == "skipped: lenet failed"
    assert status["rnn"] == status["compare"] == "ok"
    assert os.path.isfile(os.path.join(root, "report.html"))
    assert "lenet" in capsys.readouterr().out


def test_all_with_a_wrong_data_dir_exits_2_before_any_task(tmp_path, capsys):
    root = tmp_path / "r"
    assert main(["--task", "all", "--quick", "--data-dir", str(tmp_path / "nope"), "--out", str(root)]) == 2
    assert "does not exist" in capsys.readouterr().err and not root.exists()


# ------------------------------------------------------------------------------------- the real chain


@pytest.mark.slow
def test_all_quick_end_to_end_then_report_and_a_missing_part(mock_tfds, image_folder, tmp_path, capsys):
    root = str(tmp_path / "results")
    # --quick, shrunk further for the test through the user's flags (which run_all hands on after --quick's).
    rc = main(["--task", "all", "--quick", "--data-dir", image_folder, "--out", root, "--no-progress",
               "--epochs", "1", "--limit", "60", "--cell", "rnn", "--hidden", "4,8"])
    assert rc == 0, capsys.readouterr().err[-3000:]
    tasks = json.load(open(os.path.join(root, "run_all.json")))["tasks"]
    assert [(t["task"], t["status"]) for t in tasks] == [(t, "ok") for t in ORDER]

    # Each result records the command that remakes it alone, not `--task all`.
    lenet = json.load(open(os.path.join(root, "lenet", "metrics.json")))
    assert lenet["command"].startswith("run.py --task lenet --out ") and lenet["epochs"] == 1

    # compare: both nets on the same splits and seed; the recurrent net is the sweep's best.
    comp = json.load(open(os.path.join(root, "compare", "comparison.json")))
    sweep = json.load(open(os.path.join(root, "rnn", "summary.json")))["runs"]
    best = max(sweep, key=lambda r: (r["test_accuracy"], r["val_accuracy"], -r["hidden"]))
    assert (comp["recurrent_choice"]["cell"], comp["recurrent_choice"]["hidden"]) == (best["cell"], best["hidden"])
    sub = [json.load(open(os.path.join(root, "compare", r["folder"], "metrics.json"))) for r in comp["rows"]]
    assert [m["task"] for m in sub] == ["lenet", "rnn"]
    for key in ("train_size", "val_size", "test_size", "data_source", "seeds"):
        assert sub[0][key] == sub[1][key], key
    assert sub[0]["data_source"] == "tfds:mnist" and sub[0]["image_shape"] == [28, 28, 1]
    for row, m in zip(comp["rows"], sub):
        assert row["test_accuracy"] == m["test_accuracy"] and row["param_count"] == m["param_count"]
    assert os.path.isfile(os.path.join(root, "compare", "fig_cnn_vs_rnn.png"))
    assert os.path.isfile(os.path.join(root, "rnn", "fig_validation_by_size.png"))

    page, md = _read(os.path.join(root, "report.html")), _read(os.path.join(root, "REPORT.md"))
    # every section, and no part missing
    for part in SECTIONS:
        assert f'id="{part.anchor}"' in page and f'## <a id="{part.anchor}"></a>{part.title}' in md
        assert f"{part.title}: no results" not in page
    # every figure the tasks make is there; missing: only the assignment's recurrent figures (hidden 16-128), as
    # this sweep ran hidden sizes 4 and 8
    boxes = re.findall(r'<div class="missing-box"><b>Missing:</b> (.*?)</div>', page)
    assert len(boxes) == 2 * 8 and all("the assignment&#x27;s Figure" in b and "not swept" in b for b in boxes)
    # every figure the tasks wrote, embedded (no network, no file beside the page needed) and linked in the md
    figures = {p: _pngs(os.path.join(root, p)) for p in ORDER + ("lenet_nobn",)}
    expected = sorted(os.path.join(p, f) for p, fs in figures.items() for f in fs)
    assert all(figures[p] for p in ORDER)
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == len(expected)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == PNG_MAGIC for s in srcs)
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page)  # nothing fetched from a network
    assert sorted(path for _, path, _ in FIGURE_MD.findall(md)) == expected
    assert len(re.findall(r"<figcaption><b>Figure \w+( \(the assignment&#x27;s\))?\.</b> \S", page)) == len(expected)
    # the tables: measured numbers beside the assignment's, with provenance
    assert f"{lenet['test_accuracy']:.4f}" in page and f"{lenet['val_accuracy']:.4f}" in page
    for text in ("about 0.60 (60%)", "0.96-0.97 (96-97%)", "0.98-0.99 (98-99%)", "epochs to 98.5%",
                 "activation_stats.json", "shrunk run", lenet["finished_at"], "seed(s)"):
        assert text in page and text in md, text
    # headline, the tasks and the runs of "how it was made", 1b, 1c statistics, 3a-b sweep, 3c comparison
    assert page.count("<table>") == 7
    assert page.count("not judged: shrunk run") >= 10  # 1 epoch on 60 images: no claim judged

    # Every data file the report links names no path of this machine and no `.partial` folder (the configs
    # keep the data folder as the user gave it: it reloads the data), so the results can move.
    for path in glob.glob(os.path.join(root, "*", "**", "*.json"), recursive=True):  # the parts' (not run_all's)
        shown = {k: v for k, v in json.load(open(path)).items() if k not in ("config", "configs", "checkpoint_config")}
        text = json.dumps(shown)
        assert str(tmp_path) not in text and ".partial" not in text, (path, text[:300])
    for path in glob.glob(os.path.join(root, "**", "*.md"), recursive=True):
        assert str(tmp_path) not in _read(path) and ".partial" not in _read(path), path
    moved = str(tmp_path / "elsewhere" / "moved")
    os.makedirs(os.path.dirname(moved))
    shutil.move(root, moved)
    assert main(["--task", "report", "--out", moved]) == 0
    page = _read(os.path.join(moved, "report.html"))
    assert "checkpoint <code>lenet/</code>" in page and "(<code>lenet_nobn/</code>)" in page  # still found
    assert "The network shown: LeNet5 of <code>lenet/</code>, trained 1 epoch (the assignment&#x27;s: 25" in page
    shutil.move(moved, root)

    # A part that disappears is listed as missing with its command; the rest stays.
    shutil.rmtree(os.path.join(root, "deconv"))
    assert main(["--task", "report", "--out", root]) == 0
    page = _read(os.path.join(root, "report.html"))
    command = report.relative_paths("python run.py " + shlex.join(task_argv("deconv", root)), root)
    assert f"Make it with: <code>{command}</code>" in page
    assert len(re.findall(r"<img ", page)) == len(expected) - len(figures["deconv"])


def test_the_report_reads_the_published_reference_of_this_repository():
    """The reference column's default file is docs/results/reference.json beside run.py (the project root,
    wherever the report module sits in the package), and the published one has claims."""
    from common.runtime import outputs

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert os.path.samefile(outputs.PROJECT_ROOT, root) and os.path.isfile(os.path.join(root, "run.py"))
    assert os.path.samefile(report.REFERENCE_JSON, os.path.join(root, "docs", "results", "reference.json"))
    assert report.read_reference()["claims"]
