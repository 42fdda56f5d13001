r"""The linear-Gaussian latent variable model: every quantity in closed form.

$$z \sim \mathcal N(0, I_d), \qquad x \mid z \sim \mathcal N(W z + c, \sigma^2 I_D)$$
$$p(x) = \mathcal N(x; c, W W^\top + \sigma^2 I), \qquad
  p(z \mid x) = \mathcal N\big(\Sigma W^\top (x - c)/\sigma^2,\; \Sigma\big),\quad
  \Sigma = (I + W^\top W / \sigma^2)^{-1}.$$

The chapters and the tests use it as the oracle: bounds, KL gaps and SUMO's bias are all
compared against these exact values. When the columns of $W$ are orthogonal the posterior
is diagonal, so a diagonal-Gaussian $q$ can equal it exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.stats import multivariate_normal

from .distributions import diag_normal_log_prob, diag_normal_sample

__all__ = [
    "LinearGaussian",
    "make_linear_gaussian",
    "log_marginal",
    "log_joint",
    "posterior",
    "posterior_diag",
    "kl_diag_to_full",
    "log_weights",
    "sample",
]


class LinearGaussian(NamedTuple):
    """Parameters: ``weight`` (D, d), ``bias`` (D,), ``log_scale`` () the noise log-std."""
    weight: jax.Array
    bias: jax.Array
    log_scale: jax.Array


def make_linear_gaussian(key, data_dim: int, latent_dim: int, noise_scale: float = 0.5,
                         signal_scale: float = 1.5) -> LinearGaussian:
    """A random model whose ``W`` has orthogonal columns (so the exact posterior is diagonal)."""
    w_key, s_key, c_key = jax.random.split(key, 3)
    q, _ = jnp.linalg.qr(jax.random.normal(w_key, (data_dim, latent_dim)))
    col_scales = signal_scale * jnp.exp(0.3 * jax.random.normal(s_key, (latent_dim,)))
    return LinearGaussian(q * col_scales[None, :], jax.random.normal(c_key, (data_dim,)),
                          jnp.log(jnp.asarray(noise_scale)))


def log_marginal(model: LinearGaussian, x: jax.Array) -> jax.Array:
    """Exact $\\log p(x)$ for ``x`` of shape ``(..., D)``."""
    w, c, s = model
    cov = w @ w.T + jnp.exp(2 * s) * jnp.eye(w.shape[0])
    # one x (D,) at a time: jax.scipy would broadcast a batch against c and cov implicitly
    log_pdf = jnp.vectorize(lambda x_one: multivariate_normal.logpdf(x_one, c, cov), signature="(d)->()")
    return log_pdf(x)


def log_joint(model: LinearGaussian, x: jax.Array, z: jax.Array) -> jax.Array:
    r"""$\log p(x \mid z) + \log p(z)$ for ``x`` (D,) and ``z`` (..., d)."""
    w, c, s = model
    mean = z @ w.T
    mean = mean + jax.lax.broadcast_to_rank(c, mean.ndim)
    return (diag_normal_log_prob(x, mean, jnp.broadcast_to(s, mean.shape))
            + diag_normal_log_prob(z, 0.0, jnp.zeros(z.shape[-1:])))


def posterior(model: LinearGaussian, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Exact posterior ``(mean (d,), cov (d, d))`` for one ``x`` (D,)."""
    w, c, s = model
    precision = jnp.eye(w.shape[1]) + w.T @ w * jnp.exp(-2 * s)
    cov = jnp.linalg.inv(precision)
    return cov @ w.T @ (x - c) * jnp.exp(-2 * s), cov


def posterior_diag(model: LinearGaussian, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean, log_scale)`` of the posterior's diagonal: the exact posterior when ``W^T W`` is diagonal."""
    mean, cov = posterior(model, x)
    return mean, 0.5 * jnp.log(jnp.diag(cov))


def kl_diag_to_full(q_mean, q_log_scale, mean, cov) -> jax.Array:
    r"""$\mathrm{KL}\big(\mathcal N(\mu_q, \operatorname{diag} s^2) \,\|\, \mathcal N(\mu, \Sigma)\big)
    = \tfrac12\big[\operatorname{tr}(\Sigma^{-1} S) + (\mu - \mu_q)^\top \Sigma^{-1}(\mu - \mu_q) - d
      + \log|\Sigma| - \log|S|\big]$,

    with $S = \operatorname{diag} s^2$; ``q_mean`` and ``q_log_scale`` hold $\mu_q$ and $\log s$,
    ``mean`` and ``cov`` hold $\mu$ and $\Sigma$ (for example the exact posterior's)."""
    d = q_mean.shape[-1]
    prec = jnp.linalg.inv(cov)
    diff = mean - q_mean
    trace = jnp.sum(jnp.diag(prec) * jnp.exp(2 * q_log_scale))
    _, logdet = jnp.linalg.slogdet(cov)
    return 0.5 * (trace + diff @ prec @ diff - d + logdet - 2 * jnp.sum(q_log_scale))


def log_weights(key, model: LinearGaussian, x, q_mean, q_log_scale, num_samples: int) -> jax.Array:
    r"""$\log w_k = \log p(x, z_k) - \log q(z_k)$ with $z_k \sim q = \mathcal N(\mu_q, \operatorname{diag} s^2)$; shape ``(num_samples,)``."""
    z = diag_normal_sample(key, q_mean, q_log_scale, num_samples)
    return log_joint(model, x, z) - diag_normal_log_prob(z, q_mean, q_log_scale)


def sample(key, model: LinearGaussian, num_samples: int) -> tuple[jax.Array, jax.Array]:
    """Ancestral samples ``(x (N, D), z (N, d))``."""
    z_key, x_key = jax.random.split(key)
    w, c, s = model
    z = jax.random.normal(z_key, (int(num_samples), w.shape[1]))
    x = diag_normal_sample(x_key, z @ w.T + c[None, :], jnp.broadcast_to(s, (w.shape[0],)))
    return x, z
