"""The hand-written cells (recurrent/cells.py) and layers (recurrent/model.py, recurrent/optimized.py) against
Flax's reference cells, finite differences and the plain scan of the step functions, and the classifier's
parameter counts and shapes."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from recurrent import optimized
from recurrent.cells import CELLS, NUM_GATES, STEPS, project_inputs, zero_carry
from recurrent.model import RecurrentClassifier, RNNLayer, param_count, scan_prefetched

BATCH, TIME, INPUTS, HIDDEN = 3, 28, 5, 7
FLAX_CELLS = {'rnn': nn.SimpleCell, 'lstm': nn.LSTMCell, 'gru': nn.GRUCell}
GATES = {'rnn': [''], 'lstm': ['i', 'f', 'g', 'o'], 'gru': ['r', 'z', 'n']}


def _cat(params, names, leaf):
    """Concatenate one leaf of several Flax Dense modules along the output axis."""
    return jnp.concatenate([params[n][leaf] for n in names], axis=-1)


def flax_to_stacked(cell, p):
    """Map a Flax cell's per-gate Dense parameters onto ours, each operand's gates stacked in one matrix."""
    if cell == 'rnn':  # SimpleCell: the bias lives in the input Dense `i`
        return {'input_kernel': p['i']['kernel'], 'recurrent_kernel': p['h']['kernel'],
                'bias': p['i']['bias']}
    inputs = [f'i{g}' for g in GATES[cell]]
    recurrent = [f'h{g}' for g in GATES[cell]]
    stacked = {'input_kernel': _cat(p, inputs, 'kernel'),
               'recurrent_kernel': _cat(p, recurrent, 'kernel')}
    if cell == 'lstm':  # LSTMCell: biases in the recurrent Denses
        stacked['bias'] = _cat(p, recurrent, 'bias')
    else:  # GRUCell: biases in the input Denses, plus hn's own bias
        stacked['bias'] = _cat(p, inputs, 'bias')
        stacked['recurrent_bias'] = p['hn']['bias']
    return stacked


def _randomize(params, key, scale=0.5):
    """Replace every leaf (array or ShapeDtypeStruct) with noise, so that biases,
    zero at init, are tested too."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [scale * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)])


def _param_shapes(module, x):
    """Parameter shapes of `module` on input x, without running its init."""
    return jax.eval_shape(module.init, jax.random.key(0), x)['params']


@functools.cache
def _sequence():
    """The shared test input [BATCH, TIME, INPUTS]."""
    return jax.random.normal(jax.random.key(42), (BATCH, TIME, INPUTS))


@functools.cache
def _flax_reference(cell):
    """Random parameters of Flax's cell and its outputs [B, T, H] on `_sequence()`
    under nn.RNN. Cached: several tests share one reference run per cell."""
    x = _sequence()
    rnn = nn.RNN(FLAX_CELLS[cell](HIDDEN))
    params = _randomize(_param_shapes(rnn, x), jax.random.key(1))
    return params['cell'], rnn.apply({'params': params}, x)


@pytest.fixture(scope='module')
def sequence():
    return _sequence()


@pytest.mark.parametrize('cell', CELLS)
def test_layer_matches_flax(cell, sequence):
    flax_params, expected = _flax_reference(cell)
    ours = {'params': flax_to_stacked(cell, flax_params)}
    outputs = RNNLayer(cell, HIDDEN, return_sequences=True).apply(ours, sequence)
    last = RNNLayer(cell, HIDDEN).apply(ours, sequence)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    np.testing.assert_allclose(last, expected[:, -1], atol=1e-5)


@pytest.mark.parametrize('unroll', [1, 3])
def test_scan_prefetched_matches_lax_scan(unroll):
    xs = jax.random.normal(jax.random.key(0), (5, 2, 3))
    step = lambda c, x: (jnp.tanh(c + x), c * x)
    expected = jax.lax.scan(step, jnp.ones((2, 3)), xs)
    got = scan_prefetched(step, jnp.ones((2, 3)), xs, unroll=unroll)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, expected)


@pytest.mark.parametrize('cell', CELLS)
def test_single_step_matches_flax(cell, sequence):
    """The step function, called one time step at a time from the zero carry, gives Flax's h_t at every t."""
    flax_params, expected = _flax_reference(cell)
    params = flax_to_stacked(cell, flax_params)
    step = jax.jit(lambda carry, x: STEPS[cell](params, carry, project_inputs(params, x)))
    carry = zero_carry(cell, (BATCH,), HIDDEN)
    for t in range(TIME):
        carry, h = step(carry, sequence[:, t])
        np.testing.assert_allclose(h, expected[:, t], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('cell', CELLS)
def test_init_matches_flax(cell, sequence):
    """Same shapes after mapping, zero biases, one orthogonal block per gate."""
    flax_init = jax.jit(nn.RNN(FLAX_CELLS[cell](HIDDEN)).init)(jax.random.key(0), sequence)
    ours = jax.jit(RNNLayer(cell, HIDDEN).init)(jax.random.key(0), sequence)['params']
    mapped = flax_to_stacked(cell, flax_init['params']['cell'])
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, mapped)
    for name in ('bias', 'recurrent_bias'):
        if name in ours:
            np.testing.assert_array_equal(ours[name], 0.0)
    for block in jnp.split(ours['recurrent_kernel'], len(GATES[cell]), axis=-1):
        np.testing.assert_allclose(block.T @ block, jnp.eye(HIDDEN), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('cell', CELLS)
def test_gradients_match_finite_differences(cell):
    """Reverse-mode gradients through lax.scan, checked in float64."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, 4, 3), jnp.float64)
        layer = RNNLayer(cell, 4, return_sequences=True, param_dtype=jnp.float64)
        params = _randomize(_param_shapes(layer, x), jax.random.key(2))
        # jit once: check_grads evaluates the function many times at these shapes
        apply = jax.jit(lambda p, x: layer.apply({'params': p}, x))
        check_grads(apply, (params, x), order=1, modes=['rev'], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('cell', CELLS)
def test_gradients_match_flax(cell, sequence):
    flax_params, _ = _flax_reference(cell)
    flax_rnn = nn.RNN(FLAX_CELLS[cell](HIDDEN))
    flax_loss = lambda p: jnp.sum(flax_rnn.apply({'params': {'cell': p}}, sequence)[:, -1] ** 2)
    ours_loss = lambda p: jnp.sum(RNNLayer(cell, HIDDEN).apply({'params': p}, sequence) ** 2)
    expected = flax_to_stacked(cell, jax.grad(flax_loss)(flax_params))
    got = jax.grad(ours_loss)(flax_to_stacked(cell, flax_params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), got, expected)


def _count(tree):
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('cell', CELLS)
def test_classifier_parameter_counts(cell):
    h, inputs, classes = 64, 28, 10
    per_gate = inputs * h + h * h + h  # input kernel, recurrent kernel, bias
    recurrent = {'rnn': per_gate, 'lstm': 4 * per_gate, 'gru': 3 * per_gate + h}[cell]
    by_hand = recurrent + 2 * h + h * classes + classes  # + BatchNorm scale/bias + head
    # eval_shape: only the shapes matter, so skip compiling and running init
    variables = jax.eval_shape(functools.partial(RecurrentClassifier(cell, h).init, train=False),
                               jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    flax_cell = jax.eval_shape(nn.RNN(FLAX_CELLS[cell](h)).init,
                               jax.random.key(0), jnp.zeros((1, 28, inputs)))
    assert _count(variables['params']) == by_hand == param_count(cell, h)
    assert _count(variables['params']['rnn']) == recurrent == _count(flax_cell)
    assert by_hand == {'rnn': 6730, 'lstm': 24586, 'gru': 18698}[cell]


@pytest.mark.parametrize('cell', CELLS)
def test_classifier_shapes_and_batch_stats(cell):
    model = RecurrentClassifier(cell, hidden=16)
    images = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
    # jit: one compile each is cheaper than running the scan op by op
    init = jax.jit(functools.partial(model.init, train=False))
    train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                             rngs={'dropout': jax.random.key(2)}))
    evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))

    variables = init(jax.random.key(1), images)
    stats = variables['batch_stats']['bn']
    assert stats['mean'].shape == stats['var'].shape == (16,)

    logits, updates = train(variables, images)
    assert logits.shape == (4, 10)
    assert not np.allclose(updates['batch_stats']['bn']['mean'], stats['mean'])

    eval_logits = evaluate({**variables, **updates}, images[..., 0])  # [B, 28, 28] also accepted
    assert eval_logits.shape == (4, 10) and np.isfinite(eval_logits).all()


def test_unknown_cell_is_rejected():
    with pytest.raises(ValueError, match='cell must be one of'):
        RNNLayer('transformer', 4).init(jax.random.key(0), jnp.zeros((1, 2, 3)))


@pytest.mark.slow
def test_keras_initialisation_sets_the_lstm_forget_bias():
    x = jnp.zeros((2, 28, 28, 1))
    keras = RecurrentClassifier(cell='lstm', hidden=8).init(jax.random.PRNGKey(0), x, train=False)['params']
    flax_ = RecurrentClassifier(cell='lstm', hidden=8, init_scheme='flax').init(
        jax.random.PRNGKey(0), x, train=False)['params']
    bias = np.asarray(keras['rnn']['bias'])
    np.testing.assert_array_equal(bias[8:16], 1.0)  # forget gate (order i, f, g, o)
    np.testing.assert_array_equal(np.delete(bias, np.s_[8:16]), 0.0)
    np.testing.assert_array_equal(np.asarray(flax_['rnn']['bias']), 0.0)
    kernel = np.asarray(keras['rnn']['input_kernel'])
    limit = np.sqrt(6.0 / (28 + 8))  # glorot-uniform, per gate block
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    rnn = RecurrentClassifier(cell='rnn', hidden=8).init(jax.random.PRNGKey(0), x, train=False)['params']
    np.testing.assert_array_equal(np.asarray(rnn['rnn']['bias']), 0.0)


# --- recurrent/optimized.py: the optimised LSTM/GRU recurrence equals lax.scan over the plain step functions ---

def _plain_scan(cell, params, carry, x):
    """The definition: lax.scan of the cell's step function over the projected inputs, hidden states stacked."""
    return jax.lax.scan(functools.partial(STEPS[cell], params), carry, project_inputs(params, x))


def _recurrence_inputs(cell, key=0, time=TIME, hidden=HIDDEN):
    """Random parameters (biases too), initial carry and time-major inputs [T, B, INPUTS]."""
    k = jax.random.split(jax.random.key(key), 8)
    gates = NUM_GATES[cell]
    params = {'input_kernel': 0.5 * jax.random.normal(k[5], (INPUTS, gates * hidden)),
              'recurrent_kernel': 0.5 * jax.random.normal(k[0], (hidden, gates * hidden)),
              'bias': jax.random.normal(k[6], (gates * hidden,))}
    if cell == 'gru':
        params['recurrent_bias'] = jax.random.normal(k[1], (hidden,))
    x = jax.random.normal(k[2], (time, BATCH, INPUTS))
    h0 = jax.random.normal(k[3], (BATCH, hidden))
    carry = (jax.random.normal(k[4], (BATCH, hidden)), h0) if cell == 'lstm' else h0
    return params, carry, x


def _readout(carry, hs):
    """A loss that reads every output: the final carry (c too for lstm) and every hidden state."""
    return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry)) + jnp.sum(hs ** 3)


@pytest.mark.slow
@pytest.mark.parametrize('unroll', [1, 4])
@pytest.mark.parametrize('cell', ['lstm', 'gru'])
def test_optimized_recurrence_matches_plain_scan(cell, unroll):
    """Values and gradients (every parameter, the initial carry, the inputs) of optimized.recurrence against
    lax.scan over lstm_step / gru_step."""
    params, carry, xp = _recurrence_inputs(cell)
    got = jax.jit(functools.partial(optimized.recurrence, cell, unroll=unroll))(params, carry, xp)
    expected = _plain_scan(cell, params, carry, xp)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), got, expected)

    loss = lambda scan: lambda *args: _readout(*scan(*args))
    optimized_loss = loss(functools.partial(optimized.recurrence, cell, unroll=unroll))
    plain_loss = loss(functools.partial(_plain_scan, cell))
    got = jax.jit(jax.grad(optimized_loss, argnums=(0, 1, 2)))(params, carry, xp)
    expected = jax.grad(plain_loss, argnums=(0, 1, 2))(params, carry, xp)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), got, expected)


@pytest.mark.slow
def test_optimized_lstm_without_sequences_stacks_nothing_and_matches_plain_scan():
    """The path RecurrentClassifier takes (only the final carry is read): optimized.recurrence(sequences=False)
    returns no hidden-state stack, and the carry and its gradients (every parameter, the initial carry, the
    inputs) equal lax.scan over lstm_step."""
    params, carry, x = _recurrence_inputs('lstm')
    got_carry, hs = jax.jit(functools.partial(optimized.recurrence, 'lstm', sequences=False))(params, carry, x)
    assert hs is None
    expected_carry, _ = _plain_scan('lstm', params, carry, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), got_carry, expected_carry)

    def loss(scan):
        return lambda *args: _readout(scan(*args)[0], 0.0)
    got = jax.jit(jax.grad(loss(functools.partial(optimized.recurrence, 'lstm', sequences=False)),
                           argnums=(0, 1, 2)))(params, carry, x)
    expected = jax.grad(loss(functools.partial(_plain_scan, 'lstm')), argnums=(0, 1, 2))(params, carry, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), got, expected)


def test_optimized_lstm_activation_is_sigmoid_and_tanh():
    """optimized._activate's one-tanh form equals jax.nn.sigmoid on the i, f, o columns and tanh on g, to float
    rounding, over the whole range (saturated ends included)."""
    hidden = 6
    z = jnp.linspace(-40.0, 40.0, 32 * 4 * hidden).reshape(32, 4 * hidden)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    expected = jnp.concatenate([jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)], axis=-1)
    np.testing.assert_allclose(optimized._activate(z, hidden), expected, atol=2e-7, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('return_sequences', [False, True])
@pytest.mark.parametrize('cell', CELLS)
def test_optimized_layer_matches_plain_layer(cell, return_sequences, sequence):
    """RNNLayer's default (optimized) path against optimized=False, the scan of the step functions: outputs and
    gradients with respect to the parameters and the input sequence."""
    flax_params, _ = _flax_reference(cell)
    params = flax_to_stacked(cell, flax_params)
    layers = [RNNLayer(cell, HIDDEN, return_sequences=return_sequences, optimized=o) for o in (True, False)]
    outs = [layer.apply({'params': params}, sequence) for layer in layers]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    grads = [jax.grad(lambda p, x, layer=layer: jnp.sum(jnp.tanh(layer.apply({'params': p}, x)) ** 2),
                      argnums=(0, 1))(params, sequence) for layer in layers]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), *grads)


def test_optimized_recurrence_is_the_default_and_covers_lstm_and_gru():
    assert RNNLayer().optimized and set(optimized.OPTIMIZED_CELLS) == {'lstm', 'gru'}


def test_no_import_cycle_inside_recurrent():
    """cells.py (the math) imports no recurrent module, optimized.py only cells.py, model.py both: every import
    of the three, function-level ones included, points down that order."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / 'recurrent'
    allowed = {'cells': set(), 'optimized': {'cells'}, 'model': {'cells', 'optimized'}}
    for name, may_import in allowed.items():
        imported = set()
        for node in ast.walk(ast.parse((root / f'{name}.py').read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('recurrent'):
                imported |= {node.module.split('.')[1]} if '.' in node.module else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name.split('.')[1] for a in node.names if a.name.startswith('recurrent.')}
        assert imported <= may_import, (name, imported)
