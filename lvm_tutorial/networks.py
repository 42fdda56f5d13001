"""Small multilayer perceptrons as lists of ``(weight, bias)`` pairs (replacing 001's ``stax``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["mlp_init", "mlp_apply", "gaussian_head", "matmul", "dense"]


def mlp_init(key, sizes: tuple[int, ...]) -> list[tuple[jax.Array, jax.Array]]:
    """Glorot-normal weights and zero biases for layer sizes ``(in, hidden..., out)``."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / (m + n)), jnp.zeros(n))
            for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


@jax.custom_vjp
def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    r"""``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N), with a gradient in row-major products only.

    Reverse mode needs $\bar b = a^\top \bar y$, a product that contracts the leading axis of
    both factors. XLA's CPU backend hands that form to a generic contraction instead of its fast
    matrix kernels: 61 µs for the (256, 128)ᵀ (256, 4) weight gradient of the funnel sampler's
    output layer, against 8 µs for the same product as (4, 256) (256, 128) after a transposed
    copy of the smaller factor. :func:`jax.lax.optimization_barrier` keeps XLA from folding the
    copy back into the product.
    """
    return a @ b


def _matmul_fwd(a, b):
    return a @ b, (a, b)


def _matmul_bwd(residuals, cotangent):
    a, b = residuals
    barrier = jax.lax.optimization_barrier
    if a.size <= cotangent.size:                        # copy a^T: (K, M) (M, N)
        grad_b = barrier(a.T) @ cotangent
    else:                                               # copy the cotangent: ((N, M) (M, K))^T
        grad_b = barrier(barrier(cotangent.T) @ a).T
    return cotangent @ b.T, grad_b


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """The affine layer ``x @ w + b`` for ``x`` ``(..., in)``, ``b`` ``(out,)``, through :func:`matmul`
    (leading axes flattened)."""
    out = matmul(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + (w.shape[1],))
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
