"""Hand-written vanilla RNN, LSTM and GRU cells as pure step functions of a parameter dict.

Every cell keeps all its gates stacked in one matrix per operand:

    input_kernel      [in, G*H]   (G = 1 rnn, 4 lstm, 3 gru)
    recurrent_kernel  [H,  G*H]
    bias              [G*H]       the bias that is simply added to the gate sum
    recurrent_bias    [H]         gru only: the bias of W_hn h, which sits inside r * (.)

Gate order and initialisation follow ``flax.linen`` so that the parameters map
one-to-one onto Flax's cells (columns ``[g*H:(g+1)*H]`` are gate ``g``):

    rnn   h' = tanh(x W_i + b_i + h W_h)                 SimpleCell: i.{kernel,bias}, h.kernel
    lstm  gates i, f, g, o                               LSTMCell:   i?.kernel, h?.{kernel,bias}
          c' = f*c + i*g,  h' = o*tanh(c')               (no +1 on the forget bias, as in Flax)
    gru   gates r, z, n                                  GRUCell:    i?.{kernel,bias}, h{r,z}.kernel,
          n = tanh(x W_in + b_in + r * (h W_hn + b_hn))              hn.{kernel,bias}
          h' = (1-z)*n + z*h

These functions are the definitions: `recurrent.model.RNNLayer` scans them (or runs `recurrent.optimized`, which
tests check against them), and a notebook can call one step directly.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers

Array = jax.Array
Params = dict[str, Array]
Carry = Any  # Array [..., H] for rnn/gru, tuple (c, h) of such for lstm
Initializer = Callable[..., Array]

NUM_GATES = {'rnn': 1, 'lstm': 4, 'gru': 3}
CELLS = tuple(NUM_GATES)  # the cell names, in the order tables list them

# Flax's cell defaults: lecun_normal for inputs, orthogonal for the recurrence.
DEFAULT_KERNEL_INIT = nn.linear.default_kernel_init
DEFAULT_RECURRENT_INIT = initializers.orthogonal()
DEFAULT_BIAS_INIT = initializers.zeros_init()


def check_cell(cell: str) -> int:
    """Return the number of gates of `cell`, rejecting unknown names early."""
    if cell not in NUM_GATES:
        raise ValueError(f'cell must be one of {CELLS}, got {cell!r}')
    return NUM_GATES[cell]


def stacked_init(init: Initializer, num_blocks: int) -> Initializer:
    """Initialise a ``[..., G*H]`` kernel as G independent ``[..., H]`` blocks.

    Flax creates one Dense per gate, so e.g. each recurrent block is its own
    orthogonal matrix; one orthogonal ``[H, 4H]`` matrix would be scaled differently.
    """

    def init_fn(key, shape, dtype=jnp.float32):
        *lead, width = shape
        keys = jax.random.split(key, num_blocks)
        blocks = [init(k, (*lead, width // num_blocks), dtype) for k in keys]
        return jnp.concatenate(blocks, axis=-1)

    return init_fn


def stacked_params(module: nn.Module, cell: str, in_features: int) -> Params:
    """Declare the parameters of `cell`, each gate's block stacked into one matrix, on `module` (inside its
    compact call).

    `module` must have fields hidden, kernel_init, recurrent_kernel_init,
    bias_init and param_dtype. Returns the dict the step functions take.
    """
    gates, hidden, dtype = check_cell(cell), module.hidden, module.param_dtype
    p = {
        'input_kernel': module.param(
            'input_kernel', stacked_init(module.kernel_init, gates),
            (in_features, gates * hidden), dtype),
        'recurrent_kernel': module.param(
            'recurrent_kernel', stacked_init(module.recurrent_kernel_init, gates),
            (hidden, gates * hidden), dtype),
        'bias': module.param('bias', module.bias_init, (gates * hidden,), dtype),
    }
    if cell == 'gru':
        p['recurrent_bias'] = module.param(
            'recurrent_bias', module.bias_init, (hidden,), dtype)
    return p


def project_inputs(params: Params, x: Array) -> Array:
    """Input half of every gate: ``x [..., in] -> [..., G*H]``.

    Independent of the carry, so a layer can do it for all time steps at once.
    """
    return x @ params['input_kernel'] + params['bias']


def rnn_step(params: Params, h: Array, xp: Array) -> tuple[Array, Array]:
    """Elman step. h: [B, H], xp: projected input [B, H] -> (h', h')."""
    h = jnp.tanh(xp + h @ params['recurrent_kernel'])
    return h, h


def lstm_step(params: Params, carry: tuple[Array, Array], xp: Array):
    """LSTM step. carry (c, h): [B, H] each, xp: [B, 4H] -> ((c', h'), h')."""
    c, h = carry
    i, f, g, o = jnp.split(xp + h @ params['recurrent_kernel'], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


def gru_step(params: Params, h: Array, xp: Array) -> tuple[Array, Array]:
    """GRU step. h: [B, H], xp: [B, 3H] -> (h', h')."""
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    hr, hz, hn = jnp.split(h @ params['recurrent_kernel'], 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    # The reset gate scales the whole recurrent term, so its bias cannot be
    # merged into `bias` (this is Flax's / cuDNN's formulation).
    n = jnp.tanh(xn + r * (hn + params['recurrent_bias']))
    h = (1.0 - z) * n + z * h
    return h, h


STEPS = {'rnn': rnn_step, 'lstm': lstm_step, 'gru': gru_step}


def zero_carry(cell: str, batch_shape: tuple[int, ...], hidden: int,
               dtype=jnp.float32) -> Carry:
    """All-zero initial carry (Flax's default carry_init) for `batch_shape`."""
    check_cell(cell)
    h = jnp.zeros((*batch_shape, hidden), dtype)
    return (h, h) if cell == 'lstm' else h


def carry_output(cell: str, carry: Carry) -> Array:
    """The hidden state h inside a carry: [..., H]."""
    return carry[1] if cell == 'lstm' else carry
