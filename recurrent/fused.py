"""Hand-written backward passes for the scanned LSTM and GRU recurrences (the one optimised place).

`lstm_step` and `gru_step` in cells.py are the definitions; the functions here compute exactly the same
recurrence over all time steps, with a `jax.custom_vjp` whose backward pass

* reuses the gate activations the forward loop saved (one ``[T, B, G*H]`` stack), instead of the dozen
  per-step residuals JAX's scan autodiff keeps (sigmoid, 1 - sigmoid, tanh, ... each its own copy), and
* leaves the recurrent weight gradient out of the loop: the loop only emits the gate gradients ``dz_t``;
  ``dW_h = sum_t h_{t-1}^T dz_t`` is then one ``[H, T*B] @ [T*B, G*H]`` matmul after it.

Inputs: ``w_h [H, G*H]``, projected inputs ``xp [T, B, G*H]`` (time-major; the input projection and the bias
are outside, so their gradients follow from ``dxp`` by ordinary autodiff), the initial carry. Outputs: the final
carry and the hidden states ``hs [T, B, H]``. tests/test_recurrent_cells.py checks values and gradients against
``lax.scan`` over the plain step functions.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


KNOBS = {'sigmoid': 'logistic', 'prefetch': False, 'dw': 'hn'}


def _sigmoid(x):
    if KNOBS['sigmoid'] == 'tanh':
        return 0.5 * jnp.tanh(0.5 * x) + 0.5
    return jax.nn.sigmoid(x)


def _scan(body, carry, xs, unroll, reverse=False):
    if not KNOBS['prefetch']:
        return jax.lax.scan(body, carry, xs, unroll=unroll, reverse=reverse)
    n = jax.tree.leaves(xs)[0].shape[0]
    order = jnp.arange(n)[::-1] if reverse else jnp.arange(n)
    take = lambda t: jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, t, keepdims=False), xs)

    def pbody(state, k):
        carry, x_t = state
        carry, y = body(carry, x_t)
        nxt = order[jnp.minimum(k + 1, n - 1)]
        return (carry, take(nxt)), y

    (carry, _), ys = jax.lax.scan(pbody, (carry, take(order[0])), jnp.arange(n), unroll=unroll)
    if reverse:
        ys = jax.tree.map(lambda a: a[::-1], ys)
    return carry, ys


def _prev(h0: Array, hs: Array) -> Array:
    """``[h_{-1}, h_0, ..., h_{T-2}]``: the hidden state each step started from, [T, B, H]."""
    return jnp.concatenate([h0[None], hs[:-1]], axis=0)


def _weight_grad(h_prev: Array, dz: Array) -> Array:
    """``sum_t h_{t-1}^T dz_t`` as one matmul: [T, B, H], [T, B, N] -> [H, N]."""
    if KNOBS['dw'] == 'nh':
        return jnp.einsum('tbh,tbn->nh', h_prev, dz).T
    if KNOBS['dw'] == 'flat':
        return h_prev.reshape(-1, h_prev.shape[-1]).T @ dz.reshape(-1, dz.shape[-1])
    return jnp.einsum('tbh,tbn->hn', h_prev, dz)


# ----------------------------------------------------------------------------------------------- LSTM


def _lstm_forward(w_h, xp, c0, h0, unroll, save=True):
    hidden = h0.shape[-1]

    def body(carry, x):
        c, h = carry
        z = x + h @ w_h
        # i, f, o through one sigmoid over the whole gate row, g through tanh: same values as lstm_step
        sig = _sigmoid(z)
        i, f, o = sig[:, :hidden], sig[:, hidden:2 * hidden], sig[:, 3 * hidden:]
        g = jnp.tanh(z[:, 2 * hidden:3 * hidden])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        if not save:
            return (c, h), h
        acts = jnp.concatenate([i, f, g, o], axis=-1)
        return (c, h), (h, acts, c)

    (c, h), ys = _scan(body, (c0, h0), xp, unroll)
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

    (dc0, dh0), dz = _scan(body, (dc_last, dh_last), (acts, cs, c_prev, dhs), unroll, reverse=True)
    return _weight_grad(_prev(h0, hs), dz), dz, dc0, dh0


lstm_recurrence.defvjp(_lstm_fwd, _lstm_bwd)


# ----------------------------------------------------------------------------------------------- GRU


def _gru_forward(w_h, b_hn, xp, h0, unroll, save=True):
    hidden = h0.shape[-1]

    def body(h, x):
        hw = h @ w_h
        rz = _sigmoid(x[:, :2 * hidden] + hw[:, :2 * hidden])
        r, z = rz[:, :hidden], rz[:, hidden:]
        hn = hw[:, 2 * hidden:] + b_hn
        n = jnp.tanh(x[:, 2 * hidden:] + r * hn)
        h = (1.0 - z) * n + z * h
        return h, (h, jnp.concatenate([rz, n, hn], axis=-1)) if save else h

    h, ys = _scan(body, h0, xp, unroll)
    return (h, *ys) if save else (h, ys, None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def gru_recurrence(w_h: Array, b_hn: Array, xp: Array, h0: Array, unroll: int = 1):
    """``lax.scan(gru_step)`` over ``xp [T, B, 3H]`` from ``h0``: (h_T, hs [T, B, H])."""
    h, hs, _ = _gru_forward(w_h, b_hn, xp, h0, unroll, save=False)
    return h, hs


def _gru_fwd(w_h, b_hn, xp, h0, unroll):
    h, hs, acts = _gru_forward(w_h, b_hn, xp, h0, unroll)
    return (h, hs), (w_h, acts, hs, h0)


def _gru_bwd(unroll, res, cotangents):
    w_h, acts, hs, h0 = res
    dh_last, dhs = cotangents
    hidden = h0.shape[-1]
    h_prev = _prev(h0, hs)
    w_t = w_h.T

    def body(dh, step):
        a, hp, dh_out = step
        r, z, n, hn = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))
        dh = dh + dh_out
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dr = dn * hn * r * (1.0 - r)
        dzg = dh * (hp - n) * z * (1.0 - z)
        dhn = dn * r  # gradient of h W_hn + b_hn
        dhw = jnp.concatenate([dr, dzg, dhn], axis=-1)
        return dh * z + dhw @ w_t, (jnp.concatenate([dr, dzg, dn], axis=-1), dhw)

    dh0, (dxp, dhw) = _scan(body, dh_last, (acts, h_prev, dhs), unroll, reverse=True)
    db_hn = jnp.sum(dhw[..., 2 * hidden:], axis=(0, 1))
    return _weight_grad(h_prev, dhw), db_hn, dxp, dh0


gru_recurrence.defvjp(_gru_fwd, _gru_bwd)


def fused_scan(cell: str, params: dict, carry, xp: Array, unroll: int = 1):
    """What ``RNNLayer`` runs for `cell` ('lstm' or 'gru'): ``lax.scan`` of its step function over the projected
    inputs ``xp [T, B, G*H]`` from `carry` (the cell's carry layout), with the backward pass above.
    Returns (final carry, hs [T, B, H])."""
    w_h = params['recurrent_kernel']
    if cell == 'lstm':
        return lstm_recurrence(w_h, xp, *carry, unroll)
    if cell == 'gru':
        return gru_recurrence(w_h, params['recurrent_bias'], xp, carry, unroll)
    raise ValueError(f'no fused recurrence for {cell!r}')


FUSED_CELLS = ('lstm', 'gru')
