r"""Per-datapoint variational inference and the amortisation gap (Cremer et al., 2018).

A local Gaussian $q(z) = \mathcal N(z; \mu, \operatorname{diag} s^2)$ (``mean`` $\mu$,
``log_scale`` $\log s$) is fitted to one $x$ by maximising the reparameterised ELBO

$$\mathcal L(q) = \mathbb E_{z \sim q}\big[\log p(x, z) - \log q(z)\big]
               = \log p(x) - \mathrm{KL}\big(q \,\|\, p(z \mid x)\big).$$

An encoder $q_\phi(z \mid x)$ (amortised inference) pays two gaps below $\log p(x)$:

$$\log p(x) - \mathcal L(q_\phi) =
  \underbrace{\log p(x) - \mathcal L(q^*)}_{\text{approximation gap}}
  + \underbrace{\mathcal L(q^*) - \mathcal L(q_\phi)}_{\text{amortisation gap}},$$

where $q^*$ is the best member of the family for this $x$ (found per datapoint).
A model enters only through ``log_joint_fn(x, z) -> log p(x, z)`` (``x`` (D,), ``z`` (..., d)
to ``(...)``), for example ``functools.partial(linear_gaussian.log_joint, model)`` or
``functools.partial(vae_log_joint, params)``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .distributions import diag_normal_log_prob, diag_normal_sample
from .estimators import elbo
from .vae import VAEParams, decoder_log_prob

__all__ = ["GaussianQ", "gaussian_log_weights", "batch_log_weights", "local_elbo_loss", "vae_log_joint", "Gaps",
           "amortisation_gaps", "mean_and_stderr"]


class GaussianQ(NamedTuple):
    """A diagonal Gaussian ``q``: ``mean`` and ``log_scale``, each ``(d,)`` (or ``(N, d)`` for N points)."""
    mean: jax.Array
    log_scale: jax.Array


def gaussian_log_weights(key, log_joint_fn: Callable, x: jax.Array, q: GaussianQ,
                         num_samples: int) -> jax.Array:
    r"""$\log w_k = \log p(x, z_k) - \log q(z_k)$, $z_k = \mu + s \odot \epsilon_k$ (reparameterised).

    Args:
      key: PRNG key; log_joint_fn: ``(x, z) -> log p(x, z)``; x: ``(D,)``;
      q: a :class:`GaussianQ` of ``(d,)`` arrays; num_samples: $K$.

    Returns:
      ``(K,)``, differentiable in ``q``.
    """
    if jnp.shape(q.mean) != jnp.shape(q.log_scale):
        raise ValueError(f"q.mean and q.log_scale must have one shape, got {jnp.shape(q.mean)} "
                         f"and {jnp.shape(q.log_scale)}")
    z = diag_normal_sample(key, q.mean, q.log_scale, num_samples)
    return log_joint_fn(x, z) - diag_normal_log_prob(z, q.mean, q.log_scale)


def batch_log_weights(key, log_joint_fn: Callable, xs: jax.Array, q: GaussianQ,
                      num_samples: int) -> jax.Array:
    r""":func:`gaussian_log_weights` for N points at once, each with its own $q_n$ and its own key.

    Args:
      key: PRNG key (split into one per point); log_joint_fn: ``(x, z) -> log p(x, z)``;
      xs: ``(N, D)``; q: :class:`GaussianQ` of ``(N, d)`` arrays; num_samples: $K$.

    Returns:
      ``(N, K)``.
    """
    if xs.ndim != 2 or jnp.shape(q.mean)[:1] != xs.shape[:1]:
        raise ValueError(f"xs must be (N, D) with N = {jnp.shape(q.mean)[:1]} rows of q.mean, "
                         f"got shape {xs.shape}")
    keys = jax.random.split(key, xs.shape[0])
    return jax.vmap(lambda k, x, q_n: gaussian_log_weights(k, log_joint_fn, x, q_n, num_samples))(
        keys, xs, q)


def local_elbo_loss(params: GaussianQ, key, batch: jax.Array, log_joint_fn: Callable,
                    num_samples: int) -> jax.Array:
    r"""$-\sum_n \hat{\mathcal L}(q_n; x_n)$: each point $x_n$ has its own $q_n$.

    A loss for :func:`lvm_tutorial.training.fit` (bind ``log_joint_fn`` and ``num_samples`` with
    ``functools.partial``). The sum, not the mean, over points: each $q_n$ receives only the
    gradient of its own ELBO, so an elementwise optimiser such as Adam updates every point
    exactly as if it were optimised alone.

    Args:
      params: :class:`GaussianQ` of ``(N, d)`` arrays; key: PRNG key; batch: ``(N, D)``.
      log_joint_fn: ``(x, z) -> log p(x, z)``; num_samples: K samples per point and step.

    Returns:
      A scalar.
    """
    if batch.ndim != 2 or params.mean.shape[:1] != batch.shape[:1]:
        raise ValueError(f"batch must be (N, D) with N = {params.mean.shape[:1]} rows of params.mean, "
                         f"got shape {batch.shape}")
    return -jnp.sum(elbo(batch_log_weights(key, log_joint_fn, batch, params, num_samples)))


def vae_log_joint(params: VAEParams, x: jax.Array, z: jax.Array,
                  likelihood: str = "gaussian") -> jax.Array:
    r"""$\log p_\theta(x \mid z) + \log \mathcal N(z; 0, I)$ of the VAE's decoder, ``x`` (D,), ``z`` (..., d)."""
    z = jnp.asarray(z)
    return (decoder_log_prob(params, x, z, likelihood)
            + diag_normal_log_prob(z, 0.0, jnp.zeros(z.shape[-1:], z.dtype)))


class Gaps(NamedTuple):
    """Per-point gaps, each ``(N,)``; ``inference = approximation + amortisation``."""
    approximation: jax.Array
    amortisation: jax.Array
    inference: jax.Array


def amortisation_gaps(log_marginal: jax.Array, optimised_elbo: jax.Array,
                      amortised_elbo: jax.Array) -> Gaps:
    r"""Cremer et al. (2018): approximation gap $\log p(x) - \mathcal L(q^*)$, amortisation gap
    $\mathcal L(q^*) - \mathcal L(q_\phi)$, and their sum, the inference gap $\log p(x) - \mathcal L(q_\phi)$.

    Args:
      log_marginal: ``(N,)`` (an estimate of) $\log p(x_n)$, e.g. $\mathrm{IWAE}_K$ with large K;
      optimised_elbo: ``(N,)`` $\mathcal L(q^*_n)$; amortised_elbo: ``(N,)`` $\mathcal L(q_\phi(\cdot \mid x_n))$.
    """
    shapes = {jnp.shape(log_marginal), jnp.shape(optimised_elbo), jnp.shape(amortised_elbo)}
    if len(shapes) != 1:
        raise ValueError(f"log_marginal, optimised_elbo and amortised_elbo must share one shape, "
                         f"got {sorted(shapes)}")
    approximation = log_marginal - optimised_elbo
    amortisation = optimised_elbo - amortised_elbo
    return Gaps(approximation, amortisation, approximation + amortisation)


def mean_and_stderr(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""$\bar v$ and its standard error $\operatorname{sd}(v) / \sqrt N$ over the last axis (N >= 2)."""
    values = jnp.asarray(values)
    num = values.shape[-1]
    if num < 2:
        raise ValueError(f"values needs at least 2 entries on its last axis, got {num}")
    return jnp.mean(values, axis=-1), jnp.std(values, axis=-1, ddof=1) / jnp.sqrt(num)
