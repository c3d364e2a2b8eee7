"""The LeNet5 CPU performance tools (issue 26): the profile's attribution of XLA thunks to layers, the A/B
formulations (the same function as the plain convolution, so that the A/B compares equal work), and the LeNet5
peer comparison's commands."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from benchmarks import interleaved, lenet_ab, lenet_profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Excerpt of the optimized HLO of the LeNet5 train step on XLA:CPU (jax 0.10), names and metadata as XLA writes them.
HLO = """\
%fused_computation.3 (param_0.5: f32[32,14,14,50], param_1.5: f32[14,14,50,64]) -> f32[32,5,5,64] {
  %param_0.5 = f32[32,14,14,50]{3,2,1,0} parameter(0)
  ROOT %convolution.3 = f32[32,5,5,64]{3,2,1,0} convolution(%param_0.5, %param_1.5), window={size=14x14}
}

%fused_computation.11 (param_2.2: f32[50,14,14,64], param_3: f32[5,5,64,32]) -> f32[50,14,2,14,2,32] {
  %convolution.5 = f32[50,14,14,32]{3,2,1,0} convolution(%param_2.2, %param_3),
    metadata={op_name="jit(steps)/transpose(jvp(LeNet5))/conv2/conv_general_dilated"}
  ROOT %broadcast_in_dim.24 = f32[50,14,2,14,2,32]{5,4,3,2,1,0} broadcast(%convolution.5),
    metadata={op_name="jit(steps)/transpose(jvp(LeNet5))/broadcast_in_dim"}
}

%fused_computation.120 (p: f32[50,28,28,32]) -> f32[50,14,2,14,2,32] {
  %add.1 = f32[50,28,28,32]{3,2,1,0} add(%p, %p),
    metadata={op_name="jit(steps)/jvp(LeNet5)/conv1/add"}
  ROOT %eq.1 = pred[50,14,2,14,2,32]{5,4,3,2,1,0} compare(%add.1, %add.1),
    metadata={op_name="j/jvp(LeNet5)/eq"}
}

ENTRY %main.1 (a: f32[3136,1024]) -> f32[3136,1024] {
  %copy.101 = f32[3136,1024]{1,0} copy(%a)
  %ynn_fusion.3 = f32[32,5,5,64]{3,2,1,0} fusion(%x, %y), kind=kCustom, calls=%fused_computation.3
  %ynn_fusion.11 = f32[50,14,2,14,2,32]{5,4,3,2,1,0} fusion(%x, %y), kind=kCustom, calls=%fused_computation.11,
    metadata={op_name="jit(steps)/jvp(LeNet5)/reduce_sum" stack_frame_id=21}
  %compare_convert_fusion.2 = f32[50,14,2,14,2,32]{5,4,3,2,1,0} fusion(%z), kind=kLoop, calls=%fused_computation.120
  %dot = f32[3136,1024]{1,0} dot(%h, %g), lhs_contracting_dims={0}, rhs_contracting_dims={0},
    metadata={op_name="jit(steps)/transpose(jvp(LeNet5))/fc1/transpose" stack_frame_id=76}
  %copy_gather_fusion = f32[39200,1]{1,0} fusion(%c, %images.1, %idx.1), kind=kLoop, calls=%fused_computation.127,
    metadata={op_name="jit(train)/gather" stack_frame_id=88}
  %while.66 = (s32[], u32[50,1024]{1,0}) while(%tuple.58), condition=%c, body=%b,
    metadata={op_name="jit(steps)/jvp(LeNet5)/Dropout_0/jit(_bernoulli)/while"}
  ROOT %multiply_add_fusion.10 = f32[3136,1024]{1,0} fusion(%copy.101, %dot), kind=kLoop, calls=%fused_computation.50,
    metadata={op_name="jit(steps)/add" stack_frame_id=101}
}
""".replace("\n    metadata=", " metadata=")  # one line per instruction, as XLA writes


def test_thunks_are_attributed_to_the_layer_and_gradient_they_compute():
    """A fusion is named after the convolution or dot inside it (not the pooling op XLA fused around it), the
    metadata-less kernel gradient by its output's feature count, the rest after their root's op name."""
    labels = lenet_profile.op_layers(HLO, features=(32, 64))
    assert labels["ynn_fusion.3"] == "conv2 kernel gradient"
    assert labels["ynn_fusion.11"] == "conv2 input gradient"
    assert labels["compare_convert_fusion.2"] == "pool, relu forward"
    assert labels["dot"] == "fc1 gradient f32[3136,1024]"
    assert labels["while.66"] == "Dropout_0 forward"
    assert labels["copy_gather_fusion"] == "batch gather, to_float"
    assert labels["multiply_add_fusion.10"] == "optimizer, loss, metrics"
    assert labels["copy.101"] == "layout copies (no op name)"


def test_step_table_sums_thunks_by_layer_with_shares():
    table = lenet_profile.step_table({"a": 3.0, "b": 1.0, "c": 4.0}, {"a": "conv2 forward", "b": "conv2 forward",
                                                                      "c": "fc1 forward"}, wall=9.0).splitlines()
    assert table[0] == "traced step: 9.0 ms wall; thunks 8.0 ms (both threads summed)"
    assert table[4] == "| conv2 forward | 4.00 | 50% | a 3.0, b 1.0 |"
    assert table[5] == "| fc1 forward | 4.00 | 50% | c 4.0 |"


@pytest.mark.parametrize("variant,channels", [("im2col", 3), ("custom-vjp-dk-matmul", 3), ("nchw", 3),
                                              ("im2col-conv1", 1), ("im2col-conv1", 3)])
def test_ab_formulations_compute_the_plain_convolution_and_its_gradients(variant, channels):
    """Values and both gradients of each A/B formulation against lax.conv_general_dilated and jax.vjp (1e-5 of
    the largest entry: float rounding of sums of 800 products)."""
    rng = np.random.default_rng(0)
    x, k = (jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in ((2, 6, 6, channels),
                                                                             (5, 5, channels, 4)))
    g = jnp.asarray(rng.standard_normal((2, 6, 6, 4), dtype=np.float32))
    impl = lenet_ab.VARIANTS[variant][0]

    def plain(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def other(x, k):
        return impl(x, k, (1, 1), ((2, 2), (2, 2)))

    (y0, vjp0), (y1, vjp1) = jax.vjp(plain, x, k), jax.vjp(other, x, k)
    for a, b in zip((y0, *vjp0(g)), (y1, *vjp1(g))):
        np.testing.assert_allclose(b, a, atol=1e-5 * float(jnp.abs(a).max()), rtol=0)


def test_ab_pool_first_max_routes_each_window_gradient_to_its_first_maximum():
    """The same values as the model's pool; the gradient of a window with one maximum is the model's, a window
    of ties (ReLU zeros) sends it all to its first element, so every window's gradient sums to the same."""
    from lenet.model import max_pool_2x2
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.maximum(rng.standard_normal((2, 8, 8, 3)), 0).astype(np.float32))
    g = jnp.asarray(rng.standard_normal((2, 4, 4, 3)).astype(np.float32))
    (y0, vjp0), (y1, vjp1) = jax.vjp(max_pool_2x2, x), jax.vjp(lenet_ab.pool_first_max, x)
    np.testing.assert_array_equal(y1, y0)
    d0, d1 = vjp0(g)[0], vjp1(g)[0]
    np.testing.assert_array_equal(np.where(x > 0, d1, 0), np.where(x > 0, d0, 0))
    window_sums = lambda d: d.reshape(2, 4, 2, 4, 2, 3).sum((2, 4))  # noqa: E731
    np.testing.assert_allclose(window_sums(d1), window_sums(d0), rtol=1e-6)
    first = np.asarray(d1).reshape(2, 4, 2, 4, 2, 3)[:, :, 0, :, 0]
    ties = np.asarray(x).reshape(2, 4, 2, 4, 2, 3).max((2, 4)) == 0
    assert ties.any() and np.allclose(first[ties], np.asarray(g)[ties])


def test_ab_pool_split_slices_is_the_model_pool_and_its_gradient():
    """The slice-written gradient of the A/B pool is jnp.max's own (ties share it equally), to float rounding."""
    from lenet.model import max_pool_2x2
    rng = np.random.default_rng(1)
    x = jnp.asarray(np.maximum(rng.standard_normal((2, 8, 8, 3)), 0).astype(np.float32))
    g = jnp.asarray(rng.standard_normal((2, 4, 4, 3)).astype(np.float32))
    (y0, vjp0), (y1, vjp1) = jax.vjp(max_pool_2x2, x), jax.vjp(lenet_ab.pool_split_slices, x)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_allclose(vjp1(g)[0], vjp0(g)[0], rtol=1e-6, atol=1e-7)


def test_lenet_peer_comparison_runs_ours_torch_and_keras_on_lenet5():
    peers = interleaved.commands(["lenet5"], "/usr/bin/python3", flax=True, keras=True)
    assert set(peers) == {"ours", "pytorch", "keras"}  # plain Flax has no LeNet5 reference
    assert "lenet.main(['--seeds', '1'])" in peers["ours"][0][-1] and "recurrent.main" not in peers["ours"][0][-1]
    assert peers["pytorch"][0][-1] == "import reference_torch as r; r.main(['lenet5'])"
    assert peers["keras"][0][-2:] == ["--models", "lenet5"]
    both = interleaved.commands(["lenet5", "gru"], None, flax=True)
    assert both["flax"][0][-2:] == ["--cell", "gru"] and "'--cell', 'gru'" in both["ours"][0][-1]
    table = interleaved.table({"ours": {"lenet5": [900.0]}, "keras": {"lenet5": [600.0]}}, ["lenet5"]).splitlines()
    assert table[2] == "| lenet5 | 900 | 600 | 1.50x |"


def test_interleaved_refuses_an_unknown_model():
    with pytest.raises(SystemExit) as e:
        interleaved.main(["--cell", "lenet6"])
    assert e.value.code == 2


@pytest.mark.slow
def test_profile_of_the_real_step_names_the_conv2_gradients():
    """`python -m benchmarks.lenet_profile` end to end (a fresh process: XLA reads the trace flag at start-up): the
    jax.profiler trace is read back and its heaviest rows are conv2's forward and gradients."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "benchmarks.lenet_profile", "--steps", "2"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split(" | ")[0].lstrip("| ") for line in out.splitlines() if line.startswith("| conv")]
    assert {"conv2 forward", "conv2 input gradient", "conv2 kernel gradient"} <= set(rows), out
