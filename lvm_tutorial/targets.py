r"""Target densities for density matching.

The sources' funnel (001, after Neal 2003) is a 2-D variant:
$$x_1 \sim \mathcal N(0, 1.35^2), \qquad x_0 \mid x_1 \sim \mathcal N(0, e^{2 x_1}).$$
Neal's original has $v \sim \mathcal N(0, 3^2)$ and nine $x_i \mid v \sim \mathcal N(0, e^{v})$.

Also the statistics that compare samples with the funnel: the distance of their $x_1$ marginal
from $\mathcal N(0, 1.35^2)$ and their mass in the neck $x_1 < -2$.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm
from scipy import stats
from scipy.special import ndtr, ndtri

__all__ = ["FUNNEL_SCALE", "NECK", "EXACT_NECK_FRACTION", "funnel_log_prob", "funnel_sample",
           "x1_wasserstein", "x1_ks", "neck_fraction"]

FUNNEL_SCALE = 1.35
NECK = -2.0
#: $P(x_1 < -2) = \Phi(-2 / 1.35)$ under the funnel.
EXACT_NECK_FRACTION = float(ndtr(NECK / FUNNEL_SCALE))


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


def _x1(samples) -> np.ndarray:
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must be (N, 2), got shape {samples.shape}")
    return np.sort(samples[:, 1])


def x1_wasserstein(samples, scale: float = FUNNEL_SCALE) -> float:
    r"""Exact Wasserstein-1 distance between the empirical law of $x_1$ and $\mathcal N(0, \text{scale}^2)$.

    $W_1 = \int_0^1 |F_n^{-1}(u) - F^{-1}(u)|\,du$, summed in closed form over the $n$ steps of
    $F_n^{-1}$ with $\int F^{-1}(u)\,du = -\text{scale}\,\varphi(\Phi^{-1}(u))$.
    """
    x = _x1(samples)
    n = len(x)
    lo, hi = np.arange(n) / n, np.arange(1, n + 1) / n
    cut = np.clip(ndtr(x / scale), lo, hi)

    def integral(u):  # \int_0^u F^{-1}
        with np.errstate(divide="ignore", invalid="ignore"):
            q = ndtri(u)
            return np.where((u > 0) & (u < 1), -scale * np.exp(-0.5 * q * q) / math.sqrt(2 * math.pi), 0.0)

    below = x * (cut - lo) - (integral(cut) - integral(lo))
    above = (integral(hi) - integral(cut)) - x * (hi - cut)
    return float(np.sum(below + above))


def x1_ks(samples, scale: float = FUNNEL_SCALE) -> float:
    r"""Kolmogorov-Smirnov statistic $\sup_t |F_n(t) - \Phi(t/\text{scale})|$ of the $x_1$ marginal
    (``scipy.stats.kstest``)."""
    return float(stats.kstest(_x1(samples), stats.norm(0.0, scale).cdf).statistic)


def neck_fraction(samples, threshold: float = NECK) -> float:
    """Fraction of samples in the funnel's neck, $x_1 < $ ``threshold`` (exact: ``EXACT_NECK_FRACTION``)."""
    return float(np.mean(_x1(samples) < threshold))
