"""Small multilayer perceptrons as lists of ``(weight, bias)`` pairs (replacing 001's ``stax``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["mlp_init", "mlp_apply", "gaussian_head", "dense"]


def mlp_init(key, sizes: tuple[int, ...]) -> list[tuple[jax.Array, jax.Array]]:
    """Glorot-normal weights and zero biases for layer sizes ``(in, hidden..., out)``."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / (m + n)), jnp.zeros(n))
            for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """The affine layer ``x @ w + b`` for ``x`` ``(..., in)``, ``w`` ``(in, out)``, ``b`` ``(out,)``."""
    out = x @ w
    return out + jax.lax.broadcast_to_rank(b, out.ndim)


def mlp_apply(params, x: jax.Array, activation=jnp.tanh) -> jax.Array:
    """Affine layers (:func:`dense`) with ``activation`` between them (none after the last).
    ``x``: ``(..., in)``."""
    for w, b in params[:-1]:
        x = activation(dense(x, w, b))
    w, b = params[-1]
    return dense(x, w, b)


def gaussian_head(params, x: jax.Array, activation=jnp.tanh) -> tuple[jax.Array, jax.Array]:
    """An MLP whose output of size ``2 D`` is split into ``(mean, log_scale)``, each ``(..., D)``."""
    mean, log_scale = jnp.split(mlp_apply(params, x, activation), 2, axis=-1)
    return mean, log_scale
