"""The optimised LSTM and GRU recurrences that `recurrent.model.RNNLayer` runs by default (the one optimised
place; see `recurrence`).

`lstm_step` and `gru_step` in cells.py are the definitions. `lstm_layer` computes exactly the LSTM layer (input
projection, then the recurrence over all time steps) with a `jax.custom_vjp` whose backward pass

* reuses the gate activations that the forward loop saved, one ``[T, B, 4H]`` stack written over the projected
  inputs it has just read, instead of the dozen per-step residuals JAX's scan autodiff keeps;
* leaves every weight gradient out of the loop: the loop only emits the gate gradients ``dz_t``, and
  ``dW_h = sum_t h_{t-1}^T dz_t``, ``dW_x = sum_t x_t^T dz_t`` and ``db = sum_t 1^T dz_t`` are one
  ``[H + in + 1, T*B] @ [T*B, 4H]`` matmul after it. The forward loop writes each ``h_{t-1}^T`` into the top
  rows of that left-hand side, whose lower rows hold ``x^T`` and a row of ones.

Activations: i, f, o are sigmoids, computed as ``(1 + tanh(z / 2)) / 2`` so that each gate column costs one
tanh (XLA:CPU's logistic is an exp and a division); equal to ``jax.nn.sigmoid`` up to float rounding.

tests/test_recurrent_cells.py checks values and gradients against ``lax.scan`` over the plain step functions.
The measurements behind each choice are in docs/performance.md.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from recurrent.cells import gru_step, project_inputs

Array = jax.Array


# ----------------------------------------------------------------------------------------------- LSTM


def _is_g(hidden: int) -> Array:
    """[1, 4H] mask of the candidate gate g's columns (gate order i, f, g, o)."""
    col = lax.broadcasted_iota(jnp.int32, (1, 4 * hidden), 1)
    return (col >= 2 * hidden) & (col < 3 * hidden)


def _gates(a: Array, hidden: int):
    """``[B, 4H] -> i, f, g, o``, each [B, H]."""
    return (a[:, k * hidden:(k + 1) * hidden] for k in range(4))


def _activate(z: Array, hidden: int) -> Array:
    """Gate pre-activations ``z [B, 4H]`` -> activations: sigmoid on i, f, o and tanh on g, one tanh each."""
    is_g = _is_g(hidden)
    u = jnp.tanh(jnp.where(is_g, z, 0.5 * z))
    return jnp.where(is_g, u, 0.5 * u + 0.5)


def _lstm_loop(w_h, xp, c0, h0, lhs, sequences: bool, unroll: int):
    """The forward recurrence over ``xp [T, B, 4H]`` from ``(c0, h0)``, [B, H] each.

    With `lhs` (``[H + in + 1, T*B]``, training), also saves what the backward pass needs: the activations,
    written over ``xp`` (step t reads ``xp[t]`` and then writes its gates there), ``h_{t-1}^T`` into
    ``lhs[:H, t*B:(t+1)*B]`` and ``c_t`` into a [T, B, H] stack. With `sequences`, stacks ``h_t`` [T, B, H].
    Returns (c_T, h_T, activations, lhs, cs, hs); the saved ones are None when not asked for.
    """
    steps, batch, _ = xp.shape
    hidden = h0.shape[-1]
    save = lhs is not None

    def body(t, state):
        c, h, buf, lhs, cs, hs = state
        acts = _activate(lax.dynamic_index_in_dim(buf, t, keepdims=False) + h @ w_h, hidden)
        i, f, g, o = _gates(acts, hidden)
        if save:
            buf = lax.dynamic_update_index_in_dim(buf, acts, t, 0)
            lhs = lax.dynamic_update_slice(lhs, h.T, (0, t * batch))
        c = f * c + i * g
        h = o * jnp.tanh(c)
        if save:
            cs = lax.dynamic_update_index_in_dim(cs, c, t, 0)
        if sequences:
            hs = lax.dynamic_update_index_in_dim(hs, h, t, 0)
        return c, h, buf, lhs, cs, hs

    stack = lambda: jnp.zeros((steps, batch, hidden), xp.dtype)  # noqa: E731
    init = (c0, h0, xp, lhs, stack() if save else None, stack() if sequences else None)
    c, h, acts, lhs, cs, hs = lax.fori_loop(0, steps, body, init, unroll=unroll)
    return c, h, (acts if save else None), lhs, cs, hs


def _project(w_x: Array, b: Array, x: Array) -> Array:
    """cells.project_inputs for all steps at once: ``x [T, B, in] -> [T, B, 4H]``."""
    return project_inputs({'input_kernel': w_x, 'bias': b}, x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def lstm_layer(w_x: Array, b: Array, w_h: Array, x: Array, c0: Array, h0: Array, sequences: bool = True,
               unroll: int = 1):
    """``lax.scan(lstm_step)`` over ``x [T, B, in]`` (time-major) from ``(c0, h0)`` with the parameters
    ``input_kernel w_x [in, 4H]``, ``bias b [4H]``, ``recurrent_kernel w_h [H, 4H]``.

    Returns ``((c_T, h_T), hs)``: ``hs [T, B, H]`` with `sequences`, else None (nothing stacked)."""
    c, h, _, _, _, hs = _lstm_loop(w_h, _project(w_x, b, x), c0, h0, None, sequences, unroll)
    return (c, h), hs


def _lstm_layer_fwd(w_x, b, w_h, x, c0, h0, sequences, unroll):
    steps, batch, n_in = x.shape
    ones = jnp.ones((1, steps * batch), x.dtype)
    lhs = jnp.concatenate([jnp.zeros((h0.shape[-1], steps * batch), x.dtype), x.reshape(-1, n_in).T, ones])
    c, h, acts, lhs, cs, hs = _lstm_loop(w_h, _project(w_x, b, x), c0, h0, lhs, sequences, unroll)
    return ((c, h), hs), (w_x, w_h, acts, lhs, cs, c0)


def _lstm_layer_bwd(sequences, unroll, res, cotangents):
    w_x, w_h, acts, lhs, cs, c0 = res
    (dc_last, dh_last), dhs = cotangents
    steps, batch, gates = acts.shape
    hidden, n_in = c0.shape[-1], w_x.shape[0]
    is_g = _is_g(hidden)
    w_t = w_h.T  # once, outside the loop: YNNPACK's matmul with a transposed operand is slower

    def body(k, state):
        dc, dh, dz_all = state
        t = steps - 1 - k
        a = lax.dynamic_index_in_dim(acts, t, keepdims=False)
        i, f, g, o = _gates(a, hidden)
        c = lax.dynamic_index_in_dim(cs, t, keepdims=False)
        c_prev = jnp.where(t == 0, c0, lax.dynamic_index_in_dim(cs, jnp.maximum(t - 1, 0), keepdims=False))
        if sequences:
            dh = dh + lax.dynamic_index_in_dim(dhs, t, keepdims=False)
        tc = jnp.tanh(c)
        dc = dc + dh * o * (1.0 - tc * tc)
        # dL/d(gate activation) times the activation's derivative: a(1-a) for a sigmoid, 1-a^2 for tanh
        d_act = jnp.concatenate([dc * g, dc * c_prev, dc * i, dh * tc], axis=-1)
        dz = d_act * jnp.where(is_g, 1.0 - a * a, a * (1.0 - a))
        return dc * f, dz @ w_t, lax.dynamic_update_index_in_dim(dz_all, dz, t, 0)

    # A fresh buffer for dz: writing it over `acts`, which the same step reads, makes XLA copy the whole stack
    # twice per step.
    init = (dc_last, dh_last, jnp.zeros_like(acts))
    dc0, dh0, dz = lax.fori_loop(0, steps, body, init, unroll=unroll)
    dz = dz.reshape(steps * batch, gates)
    dw = lhs @ dz  # rows: dW_h [H], dW_x [in], db [1]
    dx = (dz @ w_x.T).reshape(steps, batch, n_in)  # dropped by XLA when nobody asks for it
    return dw[hidden:hidden + n_in], dw[hidden + n_in], dw[:hidden], dx, dc0, dh0


lstm_layer.defvjp(_lstm_layer_fwd, _lstm_layer_bwd)


def recurrence(cell: str, params: dict, carry, x: Array, unroll: int = 1, sequences: bool = True):
    """What ``RNNLayer`` runs for `cell` ('lstm' or 'gru') over the time-major inputs ``x [T, B, in]`` from
    `carry` (the cell's carry layout): the same numbers as scanning its step function over
    ``project_inputs(params, x)``. Returns (final carry, hs [T, B, H]); for the LSTM without `sequences`,
    (final carry, None).

    lstm: `lstm_layer` (forward and backward passes above).
    gru: ``lax.scan`` of `gru_step` with each step projecting its own row, differentiated by JAX. Measured on
    the 2-core EPYC, the GRU step was faster this way than both with the whole projection outside the loop
    and with a GRU version of the LSTM's backward pass: the [T, B, 3H] stacks that those need (projection,
    gate gradients) cost more in memory traffic than the per-step [B, in] @ [in, 3H] matmuls do.
    """
    if cell == 'lstm':
        return lstm_layer(params['input_kernel'], params['bias'], params['recurrent_kernel'], x, *carry,
                          sequences, unroll)
    if cell == 'gru':
        return jax.lax.scan(lambda h, x_t: gru_step(params, h, project_inputs(params, x_t)), carry, x,
                            unroll=unroll)
    raise ValueError(f'no optimised recurrence for {cell!r}')


OPTIMIZED_CELLS = ('lstm', 'gru')  # the cells RNNLayer(optimized=True) runs through `recurrence`
