"""common/runtime/xla_cpu.py: what a CPU compiles differently (Eigen's convolutions, no donation into a one-step call),
when, and that the training program is built with it."""
import re

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from benchmarks.harness import prepare
from common import data as data_lib
from common.core import step as step_lib
from common.runtime import xla_cpu
from lenet.config import LeNetConfig
from lenet.model import create_model
from lenet.train import penalty_fn

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's choices")
supported = pytest.mark.skipif(not xla_cpu.supports(tuple(sorted(xla_cpu.EIGEN_CONVOLUTIONS.items()))),
                               reason="this jaxlib has no YNNPACK fusion option")


def test_options_by_backend_cores_and_the_defaults_variable(monkeypatch):
    monkeypatch.delenv(xla_cpu.DEFAULTS_VARIABLE, raising=False)
    monkeypatch.setattr(xla_cpu, "supports", lambda options: True)
    monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 2)
    assert xla_cpu.compiler_options("cpu") == xla_cpu.EIGEN_CONVOLUTIONS
    assert xla_cpu.compiler_options("gpu") is None and xla_cpu.compiler_options("tpu") is None
    assert not xla_cpu.donate_state(1, "cpu") and xla_cpu.donate_state(50, "cpu")
    assert xla_cpu.donate_state(1, "gpu")
    monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 1)  # one core: YNNPACK's one-thread kernel is cheaper
    assert xla_cpu.compiler_options("cpu") is None
    monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 2)
    monkeypatch.setenv(xla_cpu.DEFAULTS_VARIABLE, "1")
    assert xla_cpu.compiler_options("cpu") is None and xla_cpu.donate_state(1, "cpu")
    monkeypatch.delenv(xla_cpu.DEFAULTS_VARIABLE)
    monkeypatch.setattr(xla_cpu, "supports", lambda options: False)  # a jaxlib without the option
    assert xla_cpu.compiler_options("cpu") is None


def test_an_unknown_option_is_not_supported_and_no_options_pass_no_keyword():
    assert not xla_cpu.supports((("xla_cpu_no_such_option", True),))
    assert xla_cpu.jit_kwargs(None) == {} and xla_cpu.jit_kwargs({"a": 1}) == {"compiler_options": {"a": 1}}


def compiled_lenet_train(k: int):
    config = LeNetConfig()
    b = config.train.batch_size
    program, state, keys, split = prepare(create_model(config), step_lib.make_train_step(penalty_fn(config)), 1, b,
                                          (28, 28, 1), k, eval_batch=b, n_examples=200)
    order = data_lib.epoch_order(split.size, b, 0, 1)
    idx = step_lib.put(np.stack([order[i % len(order)] for i in range(k)])[:, None], program.mesh,
                       P(None, "model", "data"))
    totals = program.zeros(state)
    hlo = program.train.lower(state, idx, keys, totals, split.images, split.labels).compile().as_text()
    return hlo, len(jax.tree_util.tree_leaves(totals))


def entry(hlo: str) -> str:
    return hlo[hlo.index("\nENTRY"):]


def aliased_parameters(hlo: str) -> set[int]:
    header = hlo.splitlines()[0]
    return {int(p) for p in re.findall(r"\}: \((\d+), \{\}, may-alias\)", header)}


@cpu_only
@supported
def test_the_training_program_convolves_on_eigen_and_does_not_donate_a_one_step_call(monkeypatch):
    monkeypatch.delenv(xla_cpu.DEFAULTS_VARIABLE, raising=False)
    if xla_cpu.usable_cores() < 2:
        pytest.skip("one usable core: XLA's defaults")
    one, n_totals = compiled_lenet_train(1)
    assert re.search(r"= f32\[[^\]]*\]\{[^}]*\} convolution\(", entry(one))  # Eigen: a top-level convolution
    assert len(aliased_parameters(one)) == n_totals  # only the running totals are donated
    assert len(aliased_parameters(compiled_lenet_train(2)[0])) > 10 * n_totals  # a scanned call: the whole state


@cpu_only
def test_the_defaults_variable_restores_xla_s_choices(monkeypatch):
    monkeypatch.setenv(xla_cpu.DEFAULTS_VARIABLE, "1")
    one, n_totals = compiled_lenet_train(1)
    assert not re.search(r"= f32\[[^\]]*\]\{[^}]*\} convolution\(", entry(one))  # inside YNNPACK fusions only
    assert len(aliased_parameters(one)) > 10 * n_totals
