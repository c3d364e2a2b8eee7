"""The benchmark scripts run and print what the README says (a smoke test: no timing is asserted)."""
import ast
import json
import os

import pytest

from benchmarks import harness
from benchmarks import lenet as lenet_bench
from benchmarks import recurrent as recurrent_bench
from lenet.config import LeNetConfig
from recurrent.config import RNNConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("n_models", [1, 2])
def test_lenet_benchmark_reports_throughput(n_models):
    record = lenet_bench.bench(LeNetConfig.create(hidden=16, batch_size=8, eval_batch_size=16), n_models)
    assert record["seeds"] == n_models and record["model"] == "lenet5"
    assert record["train_images_per_sec"] > 0 and record["eval_images_per_sec"] > 0
    assert record["first_call_seconds"] > 0 and len(record["windows"]) == 5


@pytest.mark.slow
def test_recurrent_benchmark_times_the_scanned_steps_training_runs(capsys):
    record = recurrent_bench.bench(RNNConfig.create(cell="lstm", hidden=8, steps_per_call=3, eval_batch_size=16))
    assert record["steps_per_call"] == 3
    assert record["train_images_per_sec"] > 0 and record["train_images_per_sec_one_step_per_call"] > 0
    harness.emit(record)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("backend", "device", "malloc", "peak_host_rss_mb", "first_call_seconds"):
        assert key in printed, key


def test_pytorch_reference_is_standalone():
    """reference_torch.py runs in a Python that has torch but not this project's dependencies."""
    with open(os.path.join(ROOT, "benchmarks", "reference_torch.py")) as f:
        tree = ast.parse(f.read())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert modules <= {"__future__", "json", "statistics", "time", "numpy", "torch"}, modules


def test_interleaved_runs_each_peer_for_the_asked_cells_and_tabulates_ratios():
    """benchmarks.interleaved: one command per peer (Keras and PyTorch only when asked), each naming the cells'
    models; the table has a median and a ratio to ours per peer, '-' where a peer has no figure."""
    from benchmarks import interleaved
    peers = interleaved.commands(["lstm", "gru"], None, flax=True, keras=True)
    assert set(peers) == {"ours", "flax", "keras"}
    assert peers["keras"][0][-2:] == ["--models", "lstm-128,gru-128"]
    assert "pytorch" in interleaved.commands(["lstm"], "/usr/bin/python3", flax=False)
    rates = {"ours": {"lstm-128": [3.0, 4.0, 5.0]}, "keras": {"lstm-128": [2.0]}, "flax": {}}
    table = interleaved.table(rates, ["lstm", "gru"]).splitlines()
    assert table[0] == "| model | ours (img/s) | flax (img/s) | keras (img/s) | ours / flax | ours / keras |"
    assert table[2] == "| lstm-128 | 4 | - | 2 | - | 2.00x |"
    assert table[3] == "| gru-128 | - | - | - | - | - |"


def test_keras_reference_refuses_unknown_models():
    from benchmarks import reference_keras
    with pytest.raises(SystemExit) as e:
        reference_keras.main(["--models", "lstm-128,lstm-7"])
    assert e.value.code == 2


@pytest.mark.slow
def test_end_to_end_prints_one_line_per_run_with_its_times(capsys):
    from benchmarks import end_to_end
    end_to_end.main(["--scale", "0.01", "--epochs", "1", "--only", "lenet-course,lenet-course-8-seeds"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["run"] for r in rows] == ["lenet-course", "lenet-course-8-seeds"]
    for r in rows:
        assert r["train_val_test"] == [90, 64, 64] and r["epochs"] == 1
        assert r["wall_seconds"] >= r["train_seconds"] + r["eval_seconds"] > 0
        assert r["compile_seconds"] > 0 and r["train_images_per_s"] > 0 and r["host_seconds"] >= 0
    assert rows[1]["seeds"] == 8
