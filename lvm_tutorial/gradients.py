r"""Per-sample estimators of $\nabla_{\mu, \log\sigma}\, \mathbb E_{z \sim \mathcal N(\mu, \sigma^2)}[f(z)]$.

Score function (likelihood ratio; Williams, 1992):
$$\hat g = \big(f(z) - c\big)\, \nabla \log \mathcal N(z; \mu, \sigma^2), \qquad
  \nabla_\mu \log \mathcal N = \frac{z - \mu}{\sigma^2}, \quad
  \nabla_{\log\sigma} \log \mathcal N = \frac{(z-\mu)^2}{\sigma^2} - 1 .$$

Reparameterisation (Kingma & Welling, 2014; Rezende et al., 2014):
$$\hat g = \nabla_{\mu, \log\sigma}\, f(\mu + \sigma \epsilon), \qquad \epsilon \sim \mathcal N(0, I).$$

Both return one estimate per sample so that a chapter can average them, or measure their
variance; ``f`` maps one ``(D,)`` point to a scalar.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .distributions import diag_normal_log_prob

__all__ = ["reparam_grad_samples", "score_function_grad_samples", "leave_one_out_baseline"]


def _check_num_samples(num_samples):
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")


def reparam_grad_samples(key, f, mean, log_scale, num_samples):
    r"""Reparameterisation gradients $\nabla_{\mu,\log\sigma} f(\mu + e^{\log\sigma}\epsilon_n)$.

    Args:
      key: PRNG key; f: ``(D,) -> ()``; mean, log_scale: ``(D,)``; num_samples: N.

    Returns:
      ``(d_mean, d_log_scale)``, each ``(N, D)``.
    """
    _check_num_samples(num_samples)
    eps = jax.random.normal(key, (int(num_samples),) + jnp.shape(mean), jnp.result_type(mean, float))

    def one(e):
        return jax.grad(lambda m, s: f(m + jnp.exp(s) * e), argnums=(0, 1))(mean, log_scale)

    return jax.vmap(one)(eps)


def score_function_grad_samples(key, f, mean, log_scale, num_samples, baseline=0.0):
    r"""Score-function gradients $(f(z_n) - c)\,\nabla_{\mu,\log\sigma}\log\mathcal N(z_n;\mu,\sigma^2)$.

    Args:
      key: PRNG key; f: ``(D,) -> ()``; mean, log_scale: ``(D,)``; num_samples: N.
      baseline: ``c``, a scalar or an ``(N,)`` array (for example
        :func:`leave_one_out_baseline` of the ``f`` values); it must not depend on ``z_n``
        itself, or the estimator is biased.

    Returns:
      ``(d_mean, d_log_scale)``, each ``(N, D)``.
    """
    _check_num_samples(num_samples)
    eps = jax.random.normal(key, (int(num_samples),) + jnp.shape(mean), jnp.result_type(mean, float))
    noise = jax.lax.broadcast_to_rank(jnp.exp(log_scale), eps.ndim) * eps    # (D,) against (N, D)
    z = jax.lax.stop_gradient(jax.lax.broadcast_to_rank(mean, eps.ndim) + noise)
    scores = jax.vmap(jax.grad(diag_normal_log_prob, argnums=(1, 2)), in_axes=(0, None, None))(
        z, mean, log_scale)
    centred = jax.vmap(f)(z) - jnp.broadcast_to(baseline, (int(num_samples),))
    return tuple(centred[:, None] * s for s in scores)


def leave_one_out_baseline(values: jax.Array) -> jax.Array:
    r"""$c_n = \frac{1}{N-1}\sum_{m \ne n} f(z_m)$: a baseline for sample $n$ independent of $z_n$.

    ``values``: ``(N,)`` with ``N >= 2``; returns ``(N,)``.
    """
    num = values.shape[0]
    if num < 2:
        raise ValueError(f"values needs at least 2 entries for a leave-one-out baseline, got {num}")
    return (jnp.sum(values) - values) / (num - 1)
