"""Training over a ('model', 'data') mesh of 4 simulated CPU devices equals the single-device run: one model
with each batch split over the devices, and 4 seeds with one model per device."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = dict(epochs=2, batch_size=8, eval_batch_size=6, hidden=32, dropout_rate=0.5)


def _four_devices(mode, folder, out):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multidevice_check.py"), mode, folder, out],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_four_device_runs_equal_the_single_device_run(image_folder, tmp_path):
    runs = _four_devices("data", image_folder, str(tmp_path / "sharded"))
    single = train_and_evaluate(LeNetConfig.create(data_dir=image_folder, **BASE), str(tmp_path / "single"),
                                progress=False)
    assert sorted(runs) == ["1", "3"]  # 3: steps scanned in one call over sharded batches
    for sharded in runs.values():
        assert sharded["n_devices"] == 4  # the parameters really were replicated over the mesh
        _assert_same_run(sharded, single, rtol=2e-4)


@pytest.mark.slow
def test_four_seeds_sharded_over_four_devices_equal_one_device(image_folder, tmp_path):
    sharded = _four_devices("models", image_folder, str(tmp_path / "sharded"))["seeds"]
    assert sharded["n_devices"] == 4 and sharded["models_per_device"] == 1  # one model on each device
    single = train_and_evaluate(LeNetConfig.create(data_dir=image_folder, seeds=4, **BASE), str(tmp_path / "one"),
                                progress=False)
    # vmapped over devices against unrolled on one: the same arithmetic, rounded in another order, which can
    # flip one of the 20 test images' predictions
    _assert_same_run(sharded, single, rtol=1e-3, accuracy_atol=1 / 20 + 1e-6)


def _assert_same_run(sharded, single, rtol, accuracy_atol=1e-5):
    for a, b in zip(sharded["history"], single.history):
        for key in ("train_running_loss", "val_loss", "test_loss"):
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(a["test_accuracy"], b["test_accuracy"], atol=accuracy_atol)
    np.testing.assert_allclose(sharded["kernel"], np.asarray(single.state.params["conv1"]["kernel"]),
                               rtol=1e-2, atol=1e-4)
