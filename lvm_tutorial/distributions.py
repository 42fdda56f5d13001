r"""Diagonal Gaussians and mixtures of them: log-densities, samples, entropies.

Every density here is written for one event and broadcasts over leading axes; the
event axis is the last one. The broadcasting is explicit (``jax.lax.broadcast_to_rank`` adds
the leading unit axes NumPy would add), so the package runs under
``jax_numpy_rank_promotion="raise"``. Scales are carried as ``log_scale`` (log standard
deviation), not as log-variances: source 001 writes ``logvar``, which is
``2 * log_scale``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

__all__ = [
    "check_broadcastable",
    "diag_normal_log_prob",
    "diag_normal_sample",
    "diag_normal_entropy",
    "mixture_log_prob",
    "mixture_posterior",
    "mixture_sample",
]


def check_broadcastable(**arrays) -> tuple[int, ...]:
    """Return the broadcast shape of the named arrays, or raise a ``ValueError`` naming them."""
    shapes = {name: jnp.shape(a) for name, a in arrays.items()}
    try:
        return jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        described = ", ".join(f"{name} has shape {shape}" for name, shape in shapes.items())
        raise ValueError(f"shapes do not broadcast: {described}") from None


def diag_normal_log_prob(x: jax.Array, mean: jax.Array, log_scale: jax.Array) -> jax.Array:
    r"""Log-density of a diagonal Gaussian, summed over the last (event) axis.

    $$\log \mathcal N(x; \mu, \operatorname{diag} s^2)
      = \sum_{i=1}^{D} \Big[-\tfrac12 \log 2\pi - \log s_i - \frac{(x_i-\mu_i)^2}{2 s_i^2}\Big],
      \qquad s = e^{\text{log\_scale}}$$

    (the scale $s$ of a proposal $q$, or a model's standard deviation $\sigma$: the density is
    the same function of either).

    Args:
      x, mean, log_scale: arrays of shape ``(..., D)`` that broadcast together.

    Returns:
      Array of the broadcast shape without its last axis.
    """
    rank = len(check_broadcastable(x=x, mean=mean, log_scale=log_scale))
    x, mean, scale = (jax.lax.broadcast_to_rank(a, rank) for a in (x, mean, jnp.exp(log_scale)))
    return jnp.sum(norm.logpdf(x, mean, scale), axis=-1)


def diag_normal_sample(key: jax.Array, mean: jax.Array, log_scale: jax.Array,
                       num_samples: int | None = None) -> jax.Array:
    r"""Reparameterised draw $z = \mu + s \odot \epsilon$, $\epsilon \sim \mathcal N(0, I)$, $s = e^{\text{log\_scale}}$.

    Args:
      key: a PRNG key.
      mean, log_scale: broadcastable arrays of shape ``(..., D)``.
      num_samples: ``None`` for one draw, else the size of a new leading axis.

    Returns:
      ``(..., D)`` or ``(num_samples, ..., D)``; differentiable in ``mean`` and ``log_scale``.
    """
    shape = check_broadcastable(mean=mean, log_scale=log_scale)
    if num_samples is not None:
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        shape = (int(num_samples),) + tuple(shape)
    dtype = jnp.result_type(mean, log_scale, float)
    eps = jax.random.normal(key, shape, dtype)
    noise = jax.lax.broadcast_to_rank(jnp.exp(log_scale), eps.ndim) * eps
    return jax.lax.broadcast_to_rank(mean, eps.ndim) + noise


def diag_normal_entropy(log_scale: jax.Array) -> jax.Array:
    r"""Differential entropy $\tfrac D2 (1 + \log 2\pi) + \sum_i \log s_i$ of
    $\mathcal N(\mu, \operatorname{diag} s^2)$ in $D$ dimensions (source 000's formula, with
    $\log s = \tfrac12 \log s^2$).

    Args:
      log_scale: ``(..., D)``.

    Returns:
      ``(...)``.
    """
    log_scale = jnp.asarray(log_scale)
    dim = log_scale.shape[-1]
    return 0.5 * dim * (1.0 + math.log(2.0 * math.pi)) + jnp.sum(log_scale, axis=-1)


def _component_log_joint(x, logits, means, log_scales):
    """log pi_c + log N(x; mu_c, sigma_c), shape (..., C)."""
    x = jnp.asarray(x)
    if means.ndim != 2 or means.shape != log_scales.shape:
        raise ValueError(f"means and log_scales must both be (C, D); got {means.shape} and {log_scales.shape}")
    if logits.shape != means.shape[:1]:
        raise ValueError(f"logits must be (C,) = {means.shape[:1]}, got {logits.shape}")
    if x.shape[-1:] != means.shape[-1:]:
        raise ValueError(f"x has event size {x.shape[-1:]} but means are (C, D) = {means.shape}")
    log_pi = jax.nn.log_softmax(logits)
    log_lik = diag_normal_log_prob(x[..., None, :], means, log_scales)
    return jax.lax.broadcast_to_rank(log_pi, log_lik.ndim) + log_lik


def mixture_log_prob(x: jax.Array, logits: jax.Array, means: jax.Array,
                     log_scales: jax.Array) -> jax.Array:
    r"""Exact log-density of a mixture of diagonal Gaussians.

    $$\log p(x) = \log \sum_{c=1}^C \pi_c \, \mathcal N(x; \mu_c, \operatorname{diag}\sigma_c^2),
      \qquad \pi = \operatorname{softmax}(\text{logits}).$$

    Args:
      x: ``(D,)`` (or ``(..., D)``).
      logits: ``(C,)``; means, log_scales: ``(C, D)``.

    Returns:
      A scalar (or ``(...)``).
    """
    return logsumexp(_component_log_joint(x, logits, means, log_scales), axis=-1)


def mixture_posterior(x: jax.Array, logits: jax.Array, means: jax.Array,
                      log_scales: jax.Array) -> jax.Array:
    r"""Responsibilities $p(z = c \mid x) = \pi_c \mathcal N(x; \mu_c, \sigma_c^2) / p(x)$ by Bayes' rule.

    Shapes as in :func:`mixture_log_prob`; returns ``(C,)`` (or ``(..., C)``) summing to one.
    """
    return jax.nn.softmax(_component_log_joint(x, logits, means, log_scales), axis=-1)


def mixture_sample(key: jax.Array, logits: jax.Array, means: jax.Array, log_scales: jax.Array,
                   num_samples: int) -> tuple[jax.Array, jax.Array]:
    r"""Ancestral sampling: $z \sim \operatorname{Cat}(\pi)$, then $x \mid z \sim \mathcal N(\mu_z, \sigma_z^2)$.

    Returns:
      ``(x, z)`` of shapes ``(num_samples, D)`` and ``(num_samples,)``.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    z_key, x_key = jax.random.split(key)
    z = jax.random.categorical(z_key, logits, shape=(int(num_samples),))
    x = diag_normal_sample(x_key, means[z], log_scales[z])
    return x, z
