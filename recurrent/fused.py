"""The optimised LSTM and GRU recurrences that RNNLayer runs (the one optimised place; see `fused_scan`).

`lstm_step` and `gru_step` in cells.py are the definitions. `lstm_recurrence` computes exactly the LSTM
recurrence over all time steps, with a `jax.custom_vjp` whose backward pass

* reuses the gate activations the forward loop saved (one ``[T, B, 4H]`` stack), instead of the dozen
  per-step residuals JAX's scan autodiff keeps (sigmoid, 1 - sigmoid, tanh, ... each its own copy), and
* leaves the recurrent weight gradient out of the loop: the loop only emits the gate gradients ``dz_t``;
  ``dW_h = sum_t h_{t-1}^T dz_t`` is then one ``[H, T*B] @ [T*B, 4H]`` matmul after it.

Inputs: ``w_h [H, 4H]``, projected inputs ``xp [T, B, 4H]`` (time-major; the input projection and the bias
are outside, so their gradients follow from ``dxp`` by ordinary autodiff), the initial carry. Outputs: the final
carry and the hidden states ``hs [T, B, H]``. tests/test_recurrent_cells.py checks values and gradients against
``lax.scan`` over the plain step functions.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _prev(h0: Array, hs: Array) -> Array:
    """``[h_{-1}, h_0, ..., h_{T-2}]``: the hidden state each step started from, [T, B, H]."""
    return jnp.concatenate([h0[None], hs[:-1]], axis=0)


def _weight_grad(h_prev: Array, dz: Array) -> Array:
    """``sum_t h_{t-1}^T dz_t`` as one matmul: [T, B, H], [T, B, N] -> [H, N]."""
    return jnp.einsum('tbh,tbn->hn', h_prev, dz)


# ----------------------------------------------------------------------------------------------- LSTM


def _lstm_forward(w_h, xp, c0, h0, unroll, save=True):
    hidden = h0.shape[-1]

    def body(carry, x):
        c, h = carry
        z = x + h @ w_h
        # i, f, o through one sigmoid over the whole gate row, g through tanh: same values as lstm_step
        sig = jax.nn.sigmoid(z)
        i, f, o = sig[:, :hidden], sig[:, hidden:2 * hidden], sig[:, 3 * hidden:]
        g = jnp.tanh(z[:, 2 * hidden:3 * hidden])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        if not save:
            return (c, h), h
        acts = jnp.concatenate([i, f, g, o], axis=-1)
        return (c, h), (h, acts, c)

    (c, h), ys = jax.lax.scan(body, (c0, h0), xp, unroll=unroll)
    return ((c, h), *ys) if save else ((c, h), ys, None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def lstm_recurrence(w_h: Array, xp: Array, c0: Array, h0: Array, unroll: int = 1):
    """``lax.scan(lstm_step)`` over ``xp [T, B, 4H]`` from ``(c0, h0)``: ((c_T, h_T), hs [T, B, H])."""
    carry, hs, _ = _lstm_forward(w_h, xp, c0, h0, unroll, save=False)
    return carry, hs


def _lstm_fwd(w_h, xp, c0, h0, unroll):
    carry, hs, acts, cs = _lstm_forward(w_h, xp, c0, h0, unroll)
    return (carry, hs), (w_h, acts, cs, hs, c0, h0)


def _lstm_bwd(unroll, res, cotangents):
    w_h, acts, cs, hs, c0, h0 = res
    (dc_last, dh_last), dhs = cotangents
    hidden = h0.shape[-1]
    c_prev = _prev(c0, cs)
    w_t = w_h.T

    def body(carry, step):
        dc, dh = carry
        a, c, cp, dh_out = step
        i, f, g, o = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))
        dh = dh + dh_out
        tc = jnp.tanh(c)
        dc = dc + dh * o * (1.0 - tc * tc)
        dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * cp * f * (1.0 - f),
                              dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=-1)
        return (dc * f, dz @ w_t), dz

    (dc0, dh0), dz = jax.lax.scan(
        body, (dc_last, dh_last), (acts, cs, c_prev, dhs), reverse=True, unroll=unroll)
    return _weight_grad(_prev(h0, hs), dz), dz, dc0, dh0


lstm_recurrence.defvjp(_lstm_fwd, _lstm_bwd)


def fused_scan(cell: str, params: dict, carry, x: Array, unroll: int = 1):
    """What ``RNNLayer`` runs for `cell` ('lstm' or 'gru') over the time-major inputs ``x [T, B, in]`` from
    `carry` (the cell's carry layout): the same numbers as scanning its step function over
    ``project_inputs(params, x)``. Returns (final carry, hs [T, B, H]).

    lstm: the input projection of all steps as one matmul, then `lstm_recurrence` (backward pass above).
    gru: ``lax.scan`` of `gru_step` with each step projecting its own row, differentiated by JAX. Measured on
    the 2-core EPYC, the GRU step was faster this way than both with the whole projection outside the loop
    and with a GRU version of the backward pass above: the [T, B, 3H] stacks that those need (projection,
    gate gradients) cost more in memory traffic than the per-step [B, in] @ [in, 3H] matmuls do.
    """
    from recurrent.cells import gru_step, project_inputs  # cells.py imports this module
    if cell == 'lstm':
        return lstm_recurrence(params['recurrent_kernel'], project_inputs(params, x), *carry, unroll)
    if cell == 'gru':
        return jax.lax.scan(lambda h, x_t: gru_step(params, h, project_inputs(params, x_t)), carry, x,
                            unroll=unroll)
    raise ValueError(f'no fused recurrence for {cell!r}')


FUSED_CELLS = ('lstm', 'gru')  # the cells RNNLayer(fused=True) runs through fused_scan
