r"""Amortised inference: an encoder $q_\phi(z \mid x)$, a decoder $p_\theta(x \mid z)$, a prior $\mathcal N(0, I)$.

Notation: $\theta$ for the decoder (generative model), $\phi$ for the encoder, as in source 002.
Both are diagonal Gaussians by default; ``likelihood="bernoulli"`` makes the decoder output
logits for binary data. ``vae_log_weights`` gives the importance log-weights
$\log w_k = \log p_\theta(x \mid z_k) + \log p(z_k) - \log q_\phi(z_k \mid x)$, from which
:mod:`lvm_tutorial.estimators` builds the ELBO, IWAE and SUMO. ``kl_to_standard_normal``,
``unit_activity`` and ``active_units`` measure posterior collapse: which latent units the
encoder leaves at the prior.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .distributions import diag_normal_log_prob, diag_normal_sample
from .estimators import iwae_bound
from .networks import gaussian_head, mlp_apply, mlp_init

__all__ = ["VAEParams", "LatentModel", "latent_model", "vae_init", "encode", "decoder_log_prob",
           "vae_log_weights", "iwae_loss", "vae_sample", "kl_to_standard_normal", "unit_activity",
           "active_units"]

LIKELIHOODS = ("gaussian", "bernoulli")


class VAEParams(NamedTuple):
    encoder: list
    decoder: list


class LatentModel(NamedTuple):
    r"""An amortised latent-variable model as two pure functions, for the trainers that take any model.

    ``encode_fn(encoder_params, x)``: $(\mu_\phi(x), \log s_\phi(x))$ of a diagonal Gaussian
    $q_\phi(z \mid x)$, ``x`` (..., D) to two (..., d). ``log_joint_fn(decoder_params, x, z)``:
    $\log p_\theta(x, z) = \log p_\theta(x \mid z) + \log p(z)$, ``x`` (..., D) and ``z``
    (..., d) to (...). Parameters are :class:`VAEParams` ``(encoder, decoder)``.
    """
    encode_fn: Callable
    log_joint_fn: Callable


def _encode_fn(encoder, x):
    return gaussian_head(encoder, x)


def _gaussian_log_joint(decoder, x, z):
    mean, log_scale = gaussian_head(decoder, z)
    log_lik = diag_normal_log_prob(x, mean, log_scale)
    log_prior = diag_normal_log_prob(z, 0.0, jnp.zeros_like(z))
    return log_lik + jax.lax.broadcast_to_rank(log_prior, log_lik.ndim)


def _bernoulli_log_joint(decoder, x, z):
    logits = mlp_apply(decoder, z)
    rank = max(jnp.ndim(x), logits.ndim)
    ones = jax.lax.broadcast_to_rank(x > 0.5, rank)
    logits = jax.lax.broadcast_to_rank(logits, rank)
    log_lik = -jnp.sum(jnp.logaddexp(0.0, jnp.where(ones, -logits, logits)), axis=-1)
    log_prior = diag_normal_log_prob(z, 0.0, jnp.zeros_like(z))
    return log_lik + jax.lax.broadcast_to_rank(log_prior, log_lik.ndim)


def latent_model(likelihood: str = "gaussian") -> LatentModel:
    """This module's VAE as a :class:`LatentModel`: standard normal prior, MLP encoder and decoder
    (Gaussian or Bernoulli likelihood), the same densities as :func:`vae_log_weights`."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return LatentModel(_encode_fn, _gaussian_log_joint if likelihood == "gaussian" else _bernoulli_log_joint)


def vae_init(key, data_dim: int, latent_dim: int, hidden: tuple[int, ...] = (64,),
             likelihood: str = "gaussian") -> VAEParams:
    """Encoder ``data_dim -> hidden -> 2 latent_dim``; decoder ``latent_dim -> hidden -> out``."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    e_key, d_key = jax.random.split(key)
    out = 2 * data_dim if likelihood == "gaussian" else data_dim
    return VAEParams(mlp_init(e_key, (data_dim, *hidden, 2 * latent_dim)),
                     mlp_init(d_key, (latent_dim, *hidden, out)))


def encode(params: VAEParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""$(\mu_\phi(x), \log s_\phi(x))$ of $q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \operatorname{diag} s_\phi(x)^2)$."""
    return gaussian_head(params.encoder, x)


def decoder_log_prob(params: VAEParams, x: jax.Array, z: jax.Array,
                     likelihood: str = "gaussian") -> jax.Array:
    r"""$\log p_\theta(x \mid z)$ for ``x`` (D,) and ``z`` (..., d); returns ``(...)``."""
    if likelihood == "gaussian":
        mean, log_scale = gaussian_head(params.decoder, z)
        return diag_normal_log_prob(x, mean, log_scale)
    logits = mlp_apply(params.decoder, z)
    ones = jax.lax.broadcast_to_rank(x > 0.5, logits.ndim)         # x (D,) against (..., D)
    return -jnp.sum(jnp.logaddexp(0.0, jnp.where(ones, -logits, logits)), axis=-1)


def vae_log_weights(key, params: VAEParams, x: jax.Array, num_samples: int,
                    likelihood: str = "gaussian") -> jax.Array:
    r"""$\log w_k$ for $z_k \sim q_\phi(z \mid x)$, reparameterised; ``x`` (D,) to ``(num_samples,)``."""
    mean, log_scale = encode(params, x)
    z = diag_normal_sample(key, mean, log_scale, num_samples)
    log_prior = diag_normal_log_prob(z, 0.0, jnp.zeros_like(mean))
    return (decoder_log_prob(params, x, z, likelihood) + log_prior
            - diag_normal_log_prob(z, mean, log_scale))


def iwae_loss(params: VAEParams, key, batch: jax.Array, num_samples: int,
              likelihood: str = "gaussian") -> jax.Array:
    r"""$-\frac1B \sum_b \mathrm{IWAE}_K(x_b)$; with ``num_samples=1`` this is the negative ELBO (a VAE)."""
    keys = jax.random.split(key, batch.shape[0])
    log_w = jax.vmap(vae_log_weights, (0, None, 0, None, None))(keys, params, batch, num_samples,
                                                               likelihood)
    return -jnp.mean(iwae_bound(log_w))


def vae_sample(key, params: VAEParams, num_samples: int, likelihood: str = "gaussian"):
    """Ancestral samples ``(x, z)``: $z \\sim \\mathcal N(0, I)$, $x \\sim p_\\theta(x \\mid z)$."""
    z_key, x_key = jax.random.split(key)
    latent_dim = params.decoder[0][0].shape[0]
    z = jax.random.normal(z_key, (int(num_samples), latent_dim))
    if likelihood == "gaussian":
        mean, log_scale = gaussian_head(params.decoder, z)
        return diag_normal_sample(x_key, mean, log_scale), z
    logits = mlp_apply(params.decoder, z)
    return jax.random.bernoulli(x_key, jax.nn.sigmoid(logits)).astype(logits.dtype), z


def kl_to_standard_normal(mean: jax.Array, log_scale: jax.Array) -> jax.Array:
    r"""Each unit's $\mathrm{KL}\big(\mathcal N(\mu_u, s_u^2) \,\|\, \mathcal N(0, 1)\big)$.

    $$\mathrm{KL}_u = \tfrac12\big(\mu_u^2 + s_u^2 - 1\big) - \log s_u ,$$

    summed over $u$ the KL term of the ELBO's reconstruction $-$ KL form,
    $\mathcal L = \mathbb E_q[\log p_\theta(x \mid z)] - \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z))$
    (Kingma & Welling, 2014, appendix B). Written with ``expm1`` so that a unit at the prior
    ($\mu = 0$, $\log s \approx 0$) gives a small KL without cancellation.

    Args:
      mean, log_scale: $\mu$ and $\log s$, ``(..., d)``.

    Returns:
      ``(..., d)``, non-negative.
    """
    mean, log_scale = jnp.asarray(mean), jnp.asarray(log_scale)
    if mean.shape != log_scale.shape:
        raise ValueError(f"mean and log_scale must have one shape, got {mean.shape} and "
                         f"{log_scale.shape}")
    return 0.5 * (mean**2 + jnp.expm1(2.0 * log_scale)) - log_scale


def unit_activity(means: jax.Array) -> jax.Array:
    r"""Burda et al. (2016)'s activity of each latent unit, $A_u = \mathrm{Cov}_x\big(\mathbb E_{q(z \mid x)}[z_u]\big)$.

    $$A_u = \frac{1}{N - 1} \sum_{n=1}^{N} \big(\mu_u(x_n) - \bar\mu_u\big)^2,
      \qquad \bar\mu_u = \frac1N \sum_n \mu_u(x_n):$$

    how much the encoder's mean for unit $u$ moves with the data. A collapsed unit, whose
    $q(z_u \mid x)$ is the same for every $x$, has $A_u = 0$ whatever that common $q$ is. It is
    the variance of the *means*, not of sampled $z$: a sampled collapsed unit still varies, by
    its posterior's own spread.

    Args:
      means: ``(N, d)``, the encoder means $\mu_\phi(x_n)$ of $N \ge 2$ data points.

    Returns:
      ``(d,)``.
    """
    means = jnp.asarray(means)
    if means.ndim != 2 or means.shape[0] < 2:
        raise ValueError(f"means must be (N, d) with N >= 2, got shape {means.shape}")
    return jnp.var(means, axis=0, ddof=1)


def active_units(means: jax.Array, threshold: float = 1e-2) -> jax.Array:
    r"""The number of units with $A_u >$ ``threshold`` (:func:`unit_activity`; Burda et al.,
    2016, count a unit as active when $A_u > 10^{-2}$). ``means`` ``(N, d)``; returns an
    integer scalar."""
    return jnp.sum(unit_activity(means) > threshold)
