r"""Per-sample estimators of $\nabla_{\mu, \log s}\, \mathbb E_{z \sim \mathcal N(\mu, \operatorname{diag} s^2)}[f(z)]$.

Score function (likelihood ratio; Williams, 1992):
$$\hat g = \big(f(z) - c\big)\, \nabla \log \mathcal N(z; \mu, \operatorname{diag} s^2), \qquad
  \nabla_\mu \log \mathcal N = \frac{z - \mu}{s^2}, \quad
  \nabla_{\log s} \log \mathcal N = \frac{(z-\mu)^2}{s^2} - 1 .$$

Reparameterisation (Kingma & Welling, 2014; Rezende et al., 2014):
$$\hat g = \nabla_{\mu, \log s}\, f(\mu + s \odot \epsilon), \qquad \epsilon \sim \mathcal N(0, I).$$

Both return one estimate per sample so that a chapter can average them, or measure their
variance; ``f`` maps one ``(d,)`` point $z$ to a scalar.
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
    r"""Reparameterisation gradients $\nabla_{\mu,\log s} f(\mu + e^{\log s} \odot \epsilon_k)$.

    Args:
      key: PRNG key; f: ``(d,) -> ()``; mean, log_scale: $\mu$ and $\log s$, ``(d,)``;
      num_samples: $K$.

    Returns:
      ``(d_mean, d_log_scale)``, each ``(K, d)``.
    """
    _check_num_samples(num_samples)
    eps = jax.random.normal(key, (int(num_samples),) + jnp.shape(mean), jnp.result_type(mean, float))

    def one(e):
        return jax.grad(lambda m, s: f(m + jnp.exp(s) * e), argnums=(0, 1))(mean, log_scale)

    return jax.vmap(one)(eps)


def score_function_grad_samples(key, f, mean, log_scale, num_samples, baseline=0.0):
    r"""Score-function gradients $(f(z_k) - c_k)\,\nabla_{\mu,\log s}\log\mathcal N(z_k;\mu,\operatorname{diag} s^2)$.

    Args:
      key: PRNG key; f: ``(d,) -> ()``; mean, log_scale: $\mu$ and $\log s$, ``(d,)``;
      num_samples: $K$.
      baseline: ``c``, a scalar or a ``(K,)`` array (for example
        :func:`leave_one_out_baseline` of the ``f`` values); its entry $c_k$ must not depend
        on $z_k$ itself, or the estimator is biased.

    Returns:
      ``(d_mean, d_log_scale)``, each ``(K, d)``.
    """
    _check_num_samples(num_samples)
    eps = jax.random.normal(key, (int(num_samples),) + jnp.shape(mean), jnp.result_type(mean, float))
    noise = jax.lax.broadcast_to_rank(jnp.exp(log_scale), eps.ndim) * eps    # (d,) against (K, d)
    z = jax.lax.stop_gradient(jax.lax.broadcast_to_rank(mean, eps.ndim) + noise)
    scores = jax.vmap(jax.grad(diag_normal_log_prob, argnums=(1, 2)), in_axes=(0, None, None))(
        z, mean, log_scale)
    centred = jax.vmap(f)(z) - jnp.broadcast_to(baseline, (int(num_samples),))
    return tuple(centred[:, None] * s for s in scores)


def leave_one_out_baseline(values: jax.Array) -> jax.Array:
    r"""$c_k = \frac{1}{K-1}\sum_{l \ne k} f(z_l)$: a baseline for sample $k$ independent of $z_k$.

    ``values``: ``(K,)``, entry $k$ holding $f(z_k)$, with $K \ge 2$; returns ``(K,)``.
    """
    num = values.shape[0]
    if num < 2:
        raise ValueError(f"values needs at least 2 entries for a leave-one-out baseline, got {num}")
    return (jnp.sum(values) - values) / (num - 1)
