r"""Monte Carlo estimates of $p(x)$ and how to judge them.

Chapter 1 estimates a mixture's $p(x)$ by sampling the latent from the prior,

$$\hat p(x) = \frac1K \sum_{k=1}^K p(x \mid z_k), \qquad z_k \sim p(z),$$

which is importance sampling with the prior as the proposal: the weight
$p(x, z) / p(z)$ is the likelihood $p(x \mid z)$. Chapter 2 swaps in other proposals.
Sampling and reduction stay apart, as in :mod:`~lvm_tutorial.estimators`: the samplers
return log-weights, and :func:`~lvm_tutorial.estimators.iwae_bound` turns them into
$\log \hat p(x) = \log \frac1K \sum_k w_k$.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .distributions import diag_normal_log_prob

__all__ = [
    "mixture_prior_log_weights",
    "carrying_fraction",
    "EstimateSummary",
    "summarise_estimates",
]


def mixture_prior_log_weights(key: jax.Array, x: jax.Array, logits: jax.Array, means: jax.Array,
                              log_scales: jax.Array, num_samples: int) -> jax.Array:
    r"""Log-weights of the naive estimator of a mixture's $p(x)$: the prior is the proposal.

    $$z_k \sim \operatorname{Cat}(\pi), \qquad
      \log w_k = \log \frac{p(x, z_k)}{p(z_k)} = \log \mathcal N(x; \mu_{z_k}, \operatorname{diag}\sigma_{z_k}^2).$$

    ``iwae_bound`` of the result is $\log \hat p(x)$, and $\hat p(x)$ is unbiased for $p(x)$
    (source 002, "prior sampling challenge").

    Args:
      key: a PRNG key.
      x: one observation ``(D,)``.
      logits: ``(C,)``, $\pi = \operatorname{softmax}(\text{logits})$; means, log_scales: ``(C, D)``.
      num_samples: the number $K$ of prior draws (static: it sets the output shape).

    Returns:
      ``(num_samples,)`` log-weights.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    x = jnp.asarray(x)
    if means.ndim != 2 or means.shape != log_scales.shape or x.shape != means.shape[-1:]:
        raise ValueError(f"x must be (D,) and means, log_scales (C, D); got x {x.shape}, "
                         f"means {means.shape}, log_scales {log_scales.shape}")
    if logits.shape != means.shape[:1]:
        raise ValueError(f"logits must be (C,) = {means.shape[:1]}, got {logits.shape}")
    z = jax.random.categorical(key, logits, shape=(int(num_samples),))
    return diag_normal_log_prob(x, means[z], log_scales[z])


def carrying_fraction(log_weights: jax.Array, mass: float = 0.99) -> jax.Array:
    r"""The smallest fraction of the $K$ samples whose weights make up ``mass`` of $\sum_k w_k$.

    With weights sorted in decreasing order, $w_{(1)} \ge w_{(2)} \ge \dots$, it is $i / K$ for the
    smallest $i$ with $\sum_{l \le i} w_{(l)} \ge \text{mass} \cdot \sum_k w_k$. Equal weights give
    about ``mass``; one dominant weight gives $1/K$. Computed from normalised weights
    ($\operatorname{softmax}$ of the log-weights), so it never underflows.

    Args:
      log_weights: ``(..., K)``.
      mass: in ``(0, 1]``.

    Returns:
      ``(...)``, in ``[1/K, 1]``.
    """
    if not 0.0 < float(mass) <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    num = log_weights.shape[-1]
    normalised = jax.nn.softmax(log_weights, axis=-1)
    cumulative = jnp.cumsum(-jnp.sort(-normalised, axis=-1), axis=-1)
    # A small slack keeps mass=1 reachable despite rounding in the cumulative sum.
    needed = jnp.sum(cumulative < mass * (1.0 - 1e-6), axis=-1) + 1
    return jnp.minimum(needed, num) / num


class EstimateSummary(NamedTuple):
    r"""How $M$ independent estimates $\log \hat p_i$ compare with the exact $\log p(x)$.

    ``relative_error``: $\sqrt{\frac1M \sum_i (\hat p_i / p - 1)^2}$;
    ``ratio``, ``ratio_se``: the mean of $\hat p_i / p$ (1 for an unbiased $\hat p$) and its standard error;
    ``log_bias``, ``log_bias_se``: the mean of $\log \hat p_i - \log p$ and its standard error.
    """
    relative_error: jax.Array
    ratio: jax.Array
    ratio_se: jax.Array
    log_bias: jax.Array
    log_bias_se: jax.Array


def summarise_estimates(log_estimates: jax.Array, log_marginal: jax.Array) -> EstimateSummary:
    r"""Summarise repeated estimates $\log \hat p_i$, ``(M,)``, against the exact ``log_marginal`` (scalar).

    The ratios $\hat p_i / p = \exp(\log \hat p_i - \log p)$ are formed from log differences, so
    neither $p$ nor $\hat p_i$ is ever exponentiated on its own (both may underflow).
    """
    log_estimates = jnp.asarray(log_estimates)
    if log_estimates.ndim != 1 or log_estimates.shape[0] < 2:
        raise ValueError(f"log_estimates must be (M,) with M >= 2, got shape {log_estimates.shape}")
    diff = log_estimates - log_marginal
    ratio = jnp.exp(diff)
    root_r = jnp.sqrt(jnp.asarray(diff.shape[0], diff.dtype))
    return EstimateSummary(
        relative_error=jnp.sqrt(jnp.mean((ratio - 1.0) ** 2)),
        ratio=jnp.mean(ratio),
        ratio_se=jnp.std(ratio, ddof=1) / root_r,
        log_bias=jnp.mean(diff),
        log_bias_se=jnp.std(diff, ddof=1) / root_r,
    )
