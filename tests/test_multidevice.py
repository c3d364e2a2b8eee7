"""Data-parallel training over a 'data' mesh equals the single-device run (4 simulated CPU devices)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_four_device_runs_equal_the_single_device_run(image_folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multidevice_check.py"), image_folder,
                           str(tmp_path / "sharded")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])

    config = LeNetConfig.create(data_dir=image_folder, epochs=2, batch_size=8, eval_batch_size=6, hidden=32,
                         dropout_rate=0.5)
    single = train_and_evaluate(config, str(tmp_path / "single"), progress=False)
    assert sorted(runs) == ["1", "3"]  # 3: steps scanned in one call over sharded batches
    for sharded in runs.values():
        _assert_same_run(sharded, single)


def _assert_same_run(sharded, single):
    assert sharded["n_devices"] == 4  # the parameters really were replicated over the mesh
    for a, b in zip(sharded["history"], single.history):
        for key in ("train_running_loss", "val_loss", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(a[key], b[key], rtol=2e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(sharded["kernel"], np.asarray(single.state.params["conv1"]["kernel"]),
                               rtol=1e-3, atol=1e-5)
