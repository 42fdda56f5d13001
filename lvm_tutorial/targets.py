r"""Target densities for density matching.

The sources' funnel (001, after Neal 2003) is a 2-D variant:
$$x_1 \sim \mathcal N(0, 1.35^2), \qquad x_0 \mid x_1 \sim \mathcal N(0, e^{2 x_1}).$$
Neal's original has $v \sim \mathcal N(0, 3^2)$ and nine $x_i \mid v \sim \mathcal N(0, e^{v})$.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

__all__ = ["FUNNEL_SCALE", "funnel_log_prob", "funnel_sample"]

FUNNEL_SCALE = 1.35


def funnel_log_prob(x: jax.Array) -> jax.Array:
    r"""$\log \mathcal N(x_0; 0, e^{2x_1}) + \log \mathcal N(x_1; 0, 1.35^2)$ for ``x`` of shape ``(..., 2)``."""
    x = jnp.asarray(x)
    if x.shape[-1:] != (2,):
        raise ValueError(f"x must have a last axis of size 2, got shape {x.shape}")
    return norm.logpdf(x[..., 0], 0.0, jnp.exp(x[..., 1])) + norm.logpdf(x[..., 1], 0.0, FUNNEL_SCALE)


def funnel_sample(key: jax.Array, num_samples: int) -> jax.Array:
    r"""Exact samples by reparameterisation: $x_1 = 1.35\,\epsilon_1$, $x_0 = e^{x_1}\epsilon_0$. ``(N, 2)``."""
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    eps = jax.random.normal(key, (int(num_samples), 2))
    x1 = FUNNEL_SCALE * eps[:, 1]
    return jnp.stack([jnp.exp(x1) * eps[:, 0], x1], axis=-1)
