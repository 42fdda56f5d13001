r"""Russian-roulette estimators of a convergent series (Lyne et al., 2015), before SUMO.

For a series $S = \sum_{j \ge 1} a_j$ and a random number of terms $J \in \{1, 2, \dots\}$,

$$\hat S = \sum_{j=1}^{J} \frac{a_j}{P(J \ge j)}, \qquad
  \mathbb E[\hat S] = \sum_{j \ge 1} a_j \, \frac{P(J \ge j)}{P(J \ge j)} = S ,$$

at an expected cost of $\mathbb E[J] = \sum_{j \ge 1} P(J \ge j)$ terms. The chapter's example
is the geometric tail $P(J \ge j) = \rho^{j-1}$ (so $\mathbb E[J] = 1/(1-\rho)$). SUMO
(:mod:`lvm_tutorial.estimators`) is this estimator applied to the telescoping series of
IWAE bounds.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["geometric_survival", "sample_geometric_num_terms", "roulette_sum",
           "RouletteMoments", "roulette_moments"]


def _check_rho(rho):
    """``rho`` as an array; a concrete value outside (0, 1) is a ``ValueError`` (a traced one passes)."""
    try:
        value = float(rho)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return jnp.asarray(rho)
    if not 0.0 < value < 1.0:
        raise ValueError(f"rho must be in (0, 1), got {value}")
    return jnp.asarray(rho)


def geometric_survival(k: jax.Array, rho: float) -> jax.Array:
    r"""$P(J \ge j) = \rho^{j-1}$ for $j \ge 1$ (and 1 for $j \le 1$); $j$ = ``k``, any integer array.

    ``rho`` may be traced (a float in (0, 1)), so one compiled program serves every tail.
    """
    rho = _check_rho(rho)
    k = jnp.asarray(k)
    kf = jnp.maximum(k, 1).astype(jnp.result_type(k, float))
    return jnp.exp((kf - 1) * jnp.log(rho).astype(kf.dtype))


def sample_geometric_num_terms(key: jax.Array, shape: tuple[int, ...], rho: float) -> jax.Array:
    r"""Draw $J$ with $P(J \ge j) = \rho^{j-1}$ by the inverse CDF:
    $J = 1 + \lfloor \log U / \log \rho \rfloor$, $U \sim \mathrm{Uniform}(0, 1]$.

    ``U`` is a float32 uniform, resolved to $2^{-23}$ ($2^{-52}$ under ``jax_enable_x64``), so
    $J$ never exceeds
    $1 + \lfloor 23 \log 2 / \log(1/\rho) \rfloor$ (14 for $\rho = 0.3$, 72 for $\rho = 0.8$):
    the terms past that cap are never reached, a bias of at most their sum (about $10^{-4}$
    for the chapter's geometric series at $\rho = 0.3$). SUMO's sampler
    (:func:`lvm_tutorial.estimators.sample_num_terms`) resolves $U$ to $2^{-128}$ instead,
    because its tail is far heavier. Returns int32 of ``shape``.
    """
    rho = _check_rho(rho)
    u = 1.0 - jax.random.uniform(key, tuple(shape))          # in (0, 1]: log u is finite
    return (1 + jnp.floor(jnp.log(u) / jnp.log(rho))).astype(jnp.int32)


def roulette_sum(terms: jax.Array, num_terms: jax.Array, survival: jax.Array) -> jax.Array:
    r"""$\hat S = \sum_{j=1}^{J} a_j / P(J \ge j)$, with the terms past $J$ masked out.

    Args:
      terms: ``(..., L)``, entry ``j-1`` holds $a_j$.
      num_terms: integer $J$ of shape ``(...)``, $1 \le J \le L$ (data: it may be traced).
      survival: ``(L,)`` or ``(..., L)``, entry ``j-1`` holds $P(J \ge j) > 0$.

    Returns:
      ``(...)``.
    """
    length = terms.shape[-1]
    if jnp.shape(survival)[-1] != length:
        raise ValueError(f"survival has {jnp.shape(survival)[-1]} entries on its last axis, "
                         f"terms has {length}")
    try:
        k = np.asarray(num_terms)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        k = None                                     # traced: checked by the caller's design
    if k is not None and k.size and (k.min() < 1 or k.max() > length):
        raise ValueError(f"num_terms must be in [1, {length}] (the number of terms given), got "
                         f"values in [{k.min()}, {k.max()}]")
    # explicit broadcasting to one rank: J (...) against the term index (L,), terms against survival
    rank = max(jnp.ndim(terms), jnp.ndim(survival), jnp.ndim(num_terms) + 1)
    to_rank = jax.lax.broadcast_to_rank
    keep = to_rank(jnp.arange(1, length + 1), rank) <= to_rank(jnp.asarray(num_terms)[..., None], rank)
    weighted = to_rank(terms, rank) / to_rank(survival, rank)
    return jnp.sum(jnp.where(keep, weighted, 0.0), axis=-1)


class RouletteMoments(NamedTuple):
    """Exact moments of a roulette estimator: its mean, its variance and the expected cost E[J]."""
    mean: float
    variance: float
    expected_cost: float


def roulette_moments(terms, survival) -> RouletteMoments:
    r"""Exact moments of $\hat S$ when $J$ ranges over $1, \dots, L$ (numpy, float64).

    With $Y_J = \sum_{i \le J} a_i / P(J \ge i)$ and $P(J = j) = P(J \ge j) - P(J \ge j+1)$
    (taking $P(J \ge L+1) = 0$): $\mathbb E[\hat S] = \sum_j P(J = j)\, Y_j$,
    $\mathrm{Var}[\hat S] = \sum_j P(J = j)\, (Y_j - \mathbb E[\hat S])^2$,
    $\mathbb E[J] = \sum_j P(J \ge j)$. For an infinite series, pass enough terms that the
    tail beyond $L$ no longer moves these numbers; a divergent variance shows up as growth
    with $L$.

    An oracle rather than a kernel: it runs in numpy float64 (not under ``jit``), because the
    tails it sums under- and overflow float32 long before they stop mattering.

    Args:
      terms, survival: ``(L,)`` each, entry ``j-1`` for term $j$.
    """
    terms = np.asarray(terms, dtype=np.float64)
    survival = np.asarray(survival, dtype=np.float64)
    if terms.shape != survival.shape or terms.ndim != 1:
        raise ValueError(f"terms and survival must be equal 1-D shapes, got {terms.shape} "
                         f"and {survival.shape}")
    partial_sums = np.cumsum(terms / survival)
    prob = survival - np.append(survival[1:], 0.0)
    mean = float(np.sum(prob * partial_sums))
    variance = float(np.sum(prob * (partial_sums - mean) ** 2))
    return RouletteMoments(mean, variance, float(np.sum(survival)))
