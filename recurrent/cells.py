"""Hand-written vanilla RNN, LSTM and GRU cells and a scanned recurrent layer.

Every cell keeps its gates in fused matrices:

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

The step functions are pure functions of the parameter dict, so the same math
serves the single-step cells and the ``lax.scan`` body of :class:`RNNLayer`.
"""

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers

Array = jax.Array
Params = dict[str, Array]
Carry = Any  # Array [..., H] for rnn/gru, tuple (c, h) of such for lstm
Initializer = Callable[..., Array]

NUM_GATES = {'rnn': 1, 'lstm': 4, 'gru': 3}
CELL_TYPES = tuple(NUM_GATES)

# Flax's cell defaults: lecun_normal for inputs, orthogonal for the recurrence.
DEFAULT_KERNEL_INIT = nn.linear.default_kernel_init
DEFAULT_RECURRENT_INIT = initializers.orthogonal()
DEFAULT_BIAS_INIT = initializers.zeros_init()


def check_cell(cell: str) -> int:
    """Return the number of gates of `cell`, rejecting unknown names early."""
    if cell not in NUM_GATES:
        raise ValueError(f'cell must be one of {CELL_TYPES}, got {cell!r}')
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


def fused_params(module: nn.Module, cell: str, in_features: int) -> Params:
    """Declare the fused parameters of `cell` on `module` (inside its compact call).

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


class _FusedCell(nn.Module):
    """One time step of a fused-gate cell; subclasses only name the cell type."""

    hidden: int
    kernel_init: Initializer = DEFAULT_KERNEL_INIT
    recurrent_kernel_init: Initializer = DEFAULT_RECURRENT_INIT
    bias_init: Initializer = DEFAULT_BIAS_INIT
    param_dtype: Any = jnp.float32

    kind: ClassVar[str]

    @nn.compact
    def __call__(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """carry: see `initialize_carry`; x: [..., in] -> (new_carry, h [..., H])."""
        params = fused_params(self, self.kind, x.shape[-1])
        return STEPS[self.kind](params, carry, project_inputs(params, x))

    @nn.nowrap
    def initialize_carry(self, batch_shape: tuple[int, ...]) -> Carry:
        """Zero carry for inputs of shape ``batch_shape + (in,)``; usable unbound."""
        return zero_carry(self.kind, tuple(batch_shape), self.hidden, self.param_dtype)


class RNNCell(_FusedCell):
    """Vanilla tanh RNN cell; carry h: [..., H]."""

    kind: ClassVar[str] = 'rnn'


class LSTMCell(_FusedCell):
    """LSTM cell; carry (c, h): [..., H] each."""

    kind: ClassVar[str] = 'lstm'


class GRUCell(_FusedCell):
    """GRU cell; carry h: [..., H]."""

    kind: ClassVar[str] = 'gru'


CELLS = {'rnn': RNNCell, 'lstm': LSTMCell, 'gru': GRUCell}


def _drop_output(step: Callable) -> Callable:
    """Wrap a scan body so that it emits no per-step output."""

    def body(carry, xp):
        return step(carry, xp)[0], None

    return body


def scan_prefetched(step: Callable, carry: Carry, xs: Array, unroll: int = 1):
    """``lax.scan(step, carry, xs)``, but x[t+1] is sliced during step t and
    handed over in the carry.

    With plain ``lax.scan`` XLA:CPU fuses the per-step dynamic slice of xs into
    the gate arithmetic, and that fused loop made the LSTM-128 forward pass
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
    """Runs a cell over a batch-major sequence with ``lax.scan``.

    ``fused=False``: the input projection of all time steps is a single
    ``[T*B, in] @ [in, G*H]`` matmul outside the loop; the scanned body only does
    the ``[B, H] @ [H, G*H]`` recurrent matmul and the elementwise gate math.
    ``fused=True`` (the default) runs lstm and gru through
    ``recurrent.fused.fused_scan``: the same numbers up to float rounding, computed
    faster (the LSTM with a hand-written backward pass). Parameters are the same as the matching
    single-step cell's.
    """

    cell: str = 'lstm'
    hidden: int = 64
    return_sequences: bool = False
    unroll: int = 1
    fused: bool = True  # lstm/gru through recurrent/fused.py (same values, faster; tests compare the two)
    kernel_init: Initializer = DEFAULT_KERNEL_INIT
    recurrent_kernel_init: Initializer = DEFAULT_RECURRENT_INIT
    bias_init: Initializer = DEFAULT_BIAS_INIT
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """x: [B, T, in] -> last hidden state [B, H], or all of them [B, T, H]
        when ``return_sequences``. The carry starts at zero."""
        from recurrent import fused as fused_lib  # it imports the step functions from here

        params = fused_params(self, self.cell, x.shape[-1])
        x = jnp.swapaxes(x, 0, 1)  # time-major: transpose the narrow input rather than the G*H-wide projection
        carry = zero_carry(self.cell, x.shape[1:2], self.hidden, x.dtype)
        if self.fused and self.cell in fused_lib.FUSED_CELLS:
            carry, hs = fused_lib.fused_scan(self.cell, params, carry, x, self.unroll, self.return_sequences)
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
        h = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                         epsilon=1e-3, name='bn')(h)
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
