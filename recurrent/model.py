"""The recurrent models: `RNNLayer` runs a cell of `recurrent.cells` over a sequence, `RecurrentClassifier` reads
an MNIST image row by row with it (report Part 3).

What runs for each cell (``RNNLayer(optimized=True)``, the default):

    rnn   ``lax.scan`` of `cells.rnn_step` over the inputs projected in one matmul outside the loop, with the next
          step's input handed over in the carry (`scan_prefetched`)
    lstm  `recurrent.optimized.lstm_layer`: a ``lax.fori_loop`` under a hand-written ``jax.custom_vjp``
    gru   ``lax.scan`` of `cells.gru_step`, each step projecting its own row (`recurrent.optimized.recurrence`)

``optimized=False`` runs every cell the first way (the definition); tests check that both give the same values
and gradients up to float rounding.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers

from common.core.config import BN_EPSILON, BN_MOMENTUM
from recurrent import optimized as optimized_lib
from recurrent.cells import (
    DEFAULT_BIAS_INIT,
    DEFAULT_KERNEL_INIT,
    DEFAULT_RECURRENT_INIT,
    STEPS,
    Array,
    Carry,
    Initializer,
    carry_output,
    check_cell,
    project_inputs,
    stacked_params,
    zero_carry,
)


def _drop_output(step: Callable) -> Callable:
    """Wrap a scan body so that it emits no per-step output."""

    def body(carry, xp):
        return step(carry, xp)[0], None

    return body


def scan_prefetched(step: Callable, carry: Carry, xs: Array, unroll: int = 1):
    """``lax.scan(step, carry, xs)``, but x[t+1] is sliced during step t and
    handed over in the carry.

    With plain ``lax.scan`` XLA:CPU fuses the per-step dynamic slice of xs into
    the gate arithmetic, and that loop made the LSTM-128 forward pass
    about 1.7x slower than projecting inside the loop; a slice that travels in
    the carry is materialised as its own small copy instead. ``ys`` are stacked
    along axis 0 like ``lax.scan``'s.
    """
    last = xs.shape[0] - 1

    def body(state, t):
        carry, x_t = state
        carry, y = step(carry, x_t)
        x_next = jax.lax.dynamic_index_in_dim(xs, jnp.minimum(t + 1, last), keepdims=False)
        return (carry, x_next), y

    (carry, _), ys = jax.lax.scan(body, (carry, xs[0]), jnp.arange(last + 1), unroll=unroll)
    return carry, ys


class RNNLayer(nn.Module):
    """Runs a cell over a batch-major sequence from a zero carry.

    ``optimized=False``: the input projection of all time steps is a single ``[T*B, in] @ [in, G*H]`` matmul
    outside the loop, and ``lax.scan`` runs the cell's step function (the recurrent matmul and the gate math).
    ``optimized=True`` (the default) runs lstm and gru through `recurrent.optimized.recurrence` instead: the same
    numbers up to float rounding, computed faster on a CPU (see the module docstring). The parameters are the
    same either way.
    """

    cell: str = 'lstm'
    hidden: int = 64
    return_sequences: bool = False
    unroll: int = 1
    optimized: bool = True  # lstm/gru through recurrent/optimized.py (same values, faster; tests compare)
    kernel_init: Initializer = DEFAULT_KERNEL_INIT
    recurrent_kernel_init: Initializer = DEFAULT_RECURRENT_INIT
    bias_init: Initializer = DEFAULT_BIAS_INIT
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """x: [B, T, in] -> last hidden state [B, H], or all of them [B, T, H]
        when ``return_sequences``. The carry starts at zero."""
        params = stacked_params(self, self.cell, x.shape[-1])
        x = jnp.swapaxes(x, 0, 1)  # time-major: transpose the narrow input rather than the G*H-wide projection
        carry = zero_carry(self.cell, x.shape[1:2], self.hidden, x.dtype)
        if self.optimized and self.cell in optimized_lib.OPTIMIZED_CELLS:
            carry, hs = optimized_lib.recurrence(self.cell, params, carry, x, self.unroll, self.return_sequences)
        else:
            xp = project_inputs(params, x)  # [T, B, G*H]
            step = functools.partial(STEPS[self.cell], params)
            if not self.return_sequences:
                step = _drop_output(step)  # do not stack per-step outputs nobody reads
            carry, hs = scan_prefetched(step, carry, xp, unroll=self.unroll)
        if self.return_sequences:
            return jnp.swapaxes(hs, 0, 1)
        return carry_output(self.cell, carry)


def keras_initializers(cell: str, hidden: int) -> dict[str, Initializer]:
    """Keras's recurrent-layer defaults, which the report's models had: glorot-uniform input kernels,
    orthogonal recurrent kernels, zero biases except the LSTM forget gate's, set to 1 (unit_forget_bias)."""

    def bias_init(key, shape, dtype=jnp.float32):
        del key
        bias = jnp.zeros(shape, dtype)
        if cell == 'lstm' and shape[-1] == 4 * hidden:
            bias = bias.at[hidden:2 * hidden].set(1.0)  # gate order i, f, g, o
        return bias

    return dict(kernel_init=initializers.glorot_uniform(),
                recurrent_kernel_init=initializers.orthogonal(), bias_init=bias_init)


class RecurrentClassifier(nn.Module):
    """Reads an image row by row and classifies it from the last hidden state.

    recurrent layer -> BatchNorm (Keras defaults) -> Dense logits. `init_scheme` picks the initialisers: 'keras'
    (the report's framework; the default) or 'flax' (Flax's cell defaults, no forget-gate bias).
    """

    cell: str = 'rnn'
    hidden: int = 64
    num_classes: int = 10
    init_scheme: str = 'keras'

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        """x: [B, rows, cols] or [B, rows, cols, C] -> logits [B, num_classes].

        Rows are time steps and a row's pixels (times channels) its features.
        No dropout: an rngs={'dropout': ...} given to apply is simply unused.
        """
        x = x.reshape(x.shape[0], x.shape[1], -1)
        if self.init_scheme not in ('keras', 'flax'):
            raise ValueError(f"init_scheme must be 'keras' or 'flax', got {self.init_scheme!r}")
        keras = self.init_scheme == 'keras'
        inits = keras_initializers(self.cell, self.hidden) if keras else {}
        h = RNNLayer(cell=self.cell, hidden=self.hidden, name='rnn', **inits)(x)
        h = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name='bn')(h)
        head_init = initializers.glorot_uniform() if keras else nn.linear.default_kernel_init
        return nn.Dense(self.num_classes, kernel_init=head_init, name='head')(h)


def param_count(cell: str, hidden: int, input_size: int = 28,
                num_classes: int = 10) -> int:
    """Trainable parameters of RecurrentClassifier (BatchNorm statistics excluded)."""
    gates = check_cell(cell)
    recurrent = gates * (input_size * hidden + hidden * hidden + hidden)
    recurrent += hidden if cell == 'gru' else 0  # the separate b_hn
    batch_norm = 2 * hidden  # scale and bias
    head = hidden * num_classes + num_classes
    return recurrent + batch_norm + head
