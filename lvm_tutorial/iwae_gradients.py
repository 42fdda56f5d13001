r"""Gradient estimators of the IWAE bound, for the proposal and for the model, and their signal-to-noise.

The model is a fixed $\log p(x, z)$ (one $x$); the proposal is a diagonal Gaussian
$q_\phi(z) = \mathcal N(\mu, \operatorname{diag} s^2)$ with $\phi = (\mu, \log s)$, reparameterised as
$z_k = \mu + s \odot \epsilon_k$. With $\log w_k = \log p(x, z_k) - \log q_\phi(z_k)$ and the
normalised weights $\tilde w_k = w_k / \sum_l w_l$, the bound and its gradient are

$$\mathrm{IWAE}_K = \log \frac1K \sum_{k=1}^K w_k, \qquad
  \nabla_\phi \mathrm{IWAE}_K = \sum_{k=1}^K \tilde w_k \, \nabla_\phi \log w_k$$

(a self-normalised weighted average of the per-sample gradients; Burda et al., 2016). Each
total derivative splits into a path part, through $z_k$, and a score part, through $q$'s
density at a fixed point:

$$\nabla_\phi \log w_k = \underbrace{\frac{\partial \log w_k}{\partial z_k}
  \frac{\partial z_k}{\partial \phi}}_{\text{path}}
  \; - \; \underbrace{\frac{\partial \log q_\phi(z)}{\partial \phi}\Big|_{z = z_k}}_{\text{score}} .$$

- :func:`iwae_grad`: the standard estimator, autodiff of $\mathrm{IWAE}_K$ (both parts).
  Unbiased for $\nabla_\phi\, \mathbb E[\mathrm{IWAE}_K]$; its signal-to-noise ratio falls like
  $1/\sqrt K$ (Rainforth et al., 2018, "Tighter variational bounds are not necessarily better").
- :func:`stl_grad`: sticking the landing (Roeder, Wu & Duvenaud, 2017), the path part only,
  $\sum_k \tilde w_k\, \partial_{z_k}\!\log w_k\, \partial_\phi z_k$. Unbiased for $K = 1$ (the
  score part has mean zero); biased for the IWAE gradient when $K > 1$.
- :func:`dreg_grad`: doubly reparameterised (Tucker, Lawson, Gu & Maddison, 2019),
  $\sum_k \tilde w_k^2\, \partial_{z_k}\!\log w_k\, \partial_\phi z_k$, unbiased for the IWAE
  gradient for every $K$.

- :func:`iwae_model_grad`: the gradient for the model's (decoder's) parameters $\theta$ in
  $\log p_\theta(x, z)$, $\sum_k \tilde w_k \nabla_\theta \log p_\theta(x, z_k)$: no score part, and
  its signal-to-noise ratio grows like $\sqrt K$ (Rainforth et al., 2018).

At the exact posterior every $\log w_k$ equals $\log p(x)$, so the path parts vanish: STL and DReG
return zero, while the standard estimator keeps the score part, $-\frac1K \sum_k \partial_\phi
\log q_\phi(z_k)$, of variance $1/(K s^2)$ in $\mu$ and $2/K$ in $\log s$.

Every estimator takes ``(key, log_joint_fn, mean, log_scale, num_samples, num_draws)`` and returns
``(d_mean, d_log_scale)``, each ``(num_draws, d)``: one gradient of one $K$-sample bound per draw.
All of them draw the same $\epsilon$ from the same key, so estimators called with one key are
paired (common random numbers). ``log_joint_fn`` maps ``z`` of shape ``(..., d)`` to ``(...)``.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .distributions import diag_normal_log_prob
from .estimators import iwae_bound

__all__ = [
    "iwae_grad",
    "stl_grad",
    "dreg_grad",
    "weighted_average_iwae_grad",
    "iwae_model_grad",
    "gradient_snr",
    "gradient_snr_se",
    "SNRCurve",
    "snr_against_num_samples",
    "log_log_slope",
]


def _log_weights(log_joint_fn, mean, log_scale, eps, path_only):
    r"""$\log w_k$ for $z_k = \mu + s \odot \epsilon_k$; with ``path_only`` q's density sees stopped $\phi$."""
    noise = jax.lax.broadcast_to_rank(jnp.exp(log_scale), eps.ndim) * eps    # (d,) against (K, d)
    z = jax.lax.broadcast_to_rank(mean, eps.ndim) + noise
    if path_only:
        mean, log_scale = jax.lax.stop_gradient((mean, log_scale))
    return log_joint_fn(z) - diag_normal_log_prob(z, mean, log_scale)


def _bound_grad_one(path_only, log_joint_fn, mean, log_scale, eps):
    def bound(m, s):
        return iwae_bound(_log_weights(log_joint_fn, m, s, eps, path_only))
    return jax.grad(bound, argnums=(0, 1))(mean, log_scale)


_iwae_one = functools.partial(_bound_grad_one, False)
_stl_one = functools.partial(_bound_grad_one, True)


def _dreg_one(log_joint_fn, mean, log_scale, eps):
    # The surrogate sum_k stop(w~_k^2) log w_k has the DReG gradient and no other use.
    def surrogate(m, s):
        log_w = _log_weights(log_joint_fn, m, s, eps, path_only=True)
        squared = jax.lax.stop_gradient(jax.nn.softmax(log_w)) ** 2
        return jnp.sum(squared * log_w)
    return jax.grad(surrogate, argnums=(0, 1))(mean, log_scale)


def _weighted_average_one(log_joint_fn, mean, log_scale, eps):
    def log_weights(m, s):
        return _log_weights(log_joint_fn, m, s, eps, path_only=False)
    jacobians = jax.jacrev(log_weights, argnums=(0, 1))(mean, log_scale)     # each (K, d)
    normalised = jax.nn.softmax(log_weights(mean, log_scale))
    return tuple(normalised @ jac for jac in jacobians)


def _model_one(params, log_joint_fn, mean, log_scale, eps):
    noise = jax.lax.broadcast_to_rank(jnp.exp(log_scale), eps.ndim) * eps
    z = jax.lax.broadcast_to_rank(mean, eps.ndim) + noise
    log_q = diag_normal_log_prob(z, mean, log_scale)       # no theta in it: a constant here
    return jax.grad(lambda p: iwae_bound(log_joint_fn(p, z) - log_q))(params)


def _draws(one_fn, key, log_joint_fn, mean, log_scale, num_samples, num_draws):
    """``num_draws`` independent K-sample gradients of ``one_fn``, vmapped over the draws."""
    for name, value in (("num_samples", num_samples), ("num_draws", num_draws)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    shape = (int(num_draws), int(num_samples)) + jnp.shape(mean)
    eps = jax.random.normal(key, shape, jnp.result_type(mean, log_scale, float))
    return jax.vmap(lambda e: one_fn(log_joint_fn, mean, log_scale, e))(eps)


def iwae_grad(key, log_joint_fn, mean, log_scale, num_samples, num_draws):
    r"""The standard reparameterised gradient $\nabla_\phi \mathrm{IWAE}_K$, by autodiff.

    $$\hat g = \nabla_\phi \log \frac1K \sum_{k=1}^K
      \frac{p(x, \mu + s \odot \epsilon_k)}{q_\phi(\mu + s \odot \epsilon_k)}, \qquad
      \epsilon_k \sim \mathcal N(0, I)$$

    (Burda et al., 2016). Args: ``key``; ``log_joint_fn``: ``(..., d) -> (...)``; ``mean``,
    ``log_scale``: $\mu$ and $\log s$, ``(d,)``; ``num_samples``: $K$; ``num_draws``. Returns
    ``(d_mean, d_log_scale)``, each ``(num_draws, d)``.
    """
    return _draws(_iwae_one, key, log_joint_fn, mean, log_scale, num_samples, num_draws)


def stl_grad(key, log_joint_fn, mean, log_scale, num_samples, num_draws):
    r"""Sticking the landing: the IWAE gradient's path part, q's parameters stopped in $\log q$.

    $$\hat g = \sum_{k=1}^K \tilde w_k \frac{\partial \log w_k}{\partial z_k}
      \frac{\partial z_k}{\partial \phi}$$

    (Roeder, Wu & Duvenaud, 2017). Unbiased for the ELBO gradient at $K = 1$, where it drops a
    mean-zero score term; for $K > 1$ the dropped term $-\sum_k \tilde w_k \partial_\phi \log q$
    no longer has mean zero, so STL is biased for the IWAE gradient (Tucker et al., 2019).
    Arguments and shapes as in :func:`iwae_grad`.
    """
    return _draws(_stl_one, key, log_joint_fn, mean, log_scale, num_samples, num_draws)


def dreg_grad(key, log_joint_fn, mean, log_scale, num_samples, num_draws):
    r"""The doubly reparameterised gradient (DReG) of $\mathrm{IWAE}_K$ for the proposal.

    $$\hat g = \sum_{k=1}^K \tilde w_k^{\,2} \frac{\partial \log w_k}{\partial z_k}
      \frac{\partial z_k}{\partial \phi}$$

    (Tucker, Lawson, Gu & Maddison, 2019, eq. 7): the score part
    $-\sum_k \tilde w_k \partial_\phi \log q$ reparameterised once more, which leaves a second
    path term. Unbiased for $\nabla_\phi \mathbb E[\mathrm{IWAE}_K]$ for every $K$, and zero at the
    exact posterior. Arguments and shapes as in :func:`iwae_grad`.
    """
    return _draws(_dreg_one, key, log_joint_fn, mean, log_scale, num_samples, num_draws)


def weighted_average_iwae_grad(key, log_joint_fn, mean, log_scale, num_samples, num_draws):
    r"""The IWAE gradient as a self-normalised average of per-sample gradients.

    $$\nabla_\phi \mathrm{IWAE}_K = \sum_{k=1}^K \tilde w_k \nabla_\phi \log w_k,
      \qquad \tilde w_k = \frac{w_k}{\sum_l w_l}$$

    (Burda et al., 2016, eq. 11): the Jacobian of the $K$ log-weights, averaged with the
    normalised weights. Equal to :func:`iwae_grad` on the same key, to rounding. Arguments and
    shapes as in :func:`iwae_grad`.
    """
    return _draws(_weighted_average_one, key, log_joint_fn, mean, log_scale, num_samples, num_draws)


def iwae_model_grad(key, log_joint_fn, params, mean, log_scale, num_samples, num_draws):
    r"""The gradient of $\mathrm{IWAE}_K$ for the model's parameters $\theta$ (the decoder's).

    $$\nabla_\theta \mathrm{IWAE}_K = \sum_{k=1}^K \tilde w_k \,\nabla_\theta \log p_\theta(x, z_k),
      \qquad z_k = \mu + s \odot \epsilon_k$$

    (Burda et al., 2016): $q$ does not depend on $\theta$, so there is no score part, and the
    estimator is unbiased for $\nabla_\theta\, \mathbb E[\mathrm{IWAE}_K]$. Its signal-to-noise
    ratio grows like $\sqrt K$ (Rainforth et al., 2018), where the proposal's falls like
    $1/\sqrt K$. Args: ``key``; ``log_joint_fn``: ``(params, z (..., d)) -> (...)``; ``params``:
    any pytree; ``mean``, ``log_scale``: $\mu$ and $\log s$, ``(d,)``; ``num_samples``: $K$;
    ``num_draws``. Returns a pytree like ``params`` whose leaves have a leading axis of
    ``num_draws``. On one key it draws the same
    $\epsilon$ as :func:`iwae_grad`.
    """
    one = functools.partial(_model_one, params)
    return _draws(one, key, log_joint_fn, mean, log_scale, num_samples, num_draws)


def gradient_snr(samples: jax.Array) -> jax.Array:
    r"""Signal-to-noise ratio per coordinate, $|\bar g| / s_g$ over the first axis.

    $\bar g$ is the sample mean, $s_g$ the sample standard deviation (Rainforth et al., 2018).
    ``(num_draws, ...)`` to ``(...)``.
    """
    return jnp.abs(jnp.mean(samples, axis=0)) / jnp.std(samples, axis=0, ddof=1)


def gradient_snr_se(samples: jax.Array) -> jax.Array:
    r"""Delta-method standard error of :func:`gradient_snr`, per coordinate.

    With $M$ draws of mean $\bar g$, standard deviation $s_g$ and central moments
    $\mu_3, \mu_4$ (local names, not $q$'s mean):
    $$\operatorname{Var}\widehat{\mathrm{SNR}} \approx \frac1M\Big[1 - \frac{\bar g\,\mu_3}{s_g^4}
      + \frac{\bar g^2(\mu_4 - s_g^4)}{4 s_g^6}\Big],$$
    which is $(1 + \mathrm{SNR}^2/2)/M$ for Gaussian samples. ``(M, ...)`` to ``(...)``.
    """
    num = samples.shape[0]
    mean = jnp.mean(samples, axis=0)
    centred = samples - mean[None]
    var = jnp.mean(centred**2, axis=0)
    mu3 = jnp.mean(centred**3, axis=0)
    mu4 = jnp.mean(centred**4, axis=0)
    variance = 1.0 - mean * mu3 / var**2 + mean**2 * (mu4 - var**2) / (4 * var**3)
    return jnp.sqrt(jnp.maximum(variance, 0.0) / num)


class SNRCurve(NamedTuple):
    """Gradient SNR against K: ``num_samples`` (G,), G sample counts; ``snr`` and ``se`` are
    ``(d_mean, d_log_scale)``, each ``(G, d)``."""
    num_samples: np.ndarray
    snr: tuple[jax.Array, jax.Array]
    se: tuple[jax.Array, jax.Array]


def snr_against_num_samples(key, grad_fn: Callable, log_joint_fn, mean, log_scale,
                            num_samples: Sequence[int], num_draws: int) -> SNRCurve:
    r"""Measure the proposal-gradient SNR of ``grad_fn`` at each $K$ in ``num_samples``.

    ``grad_fn`` is one of :func:`iwae_grad`, :func:`stl_grad`, :func:`dreg_grad` (or any function
    with their signature); each $K$ gets its own key, so the points are independent. The SNR of an
    unbiased estimator measures how well its sign is known: Rainforth et al. (2018) show the
    standard IWAE estimator's falls like $1/\sqrt K$ for the proposal.
    """
    keys = jax.random.split(key, len(num_samples))
    snr, se = [], []
    for k_key, k in zip(keys, num_samples):
        grads = grad_fn(k_key, log_joint_fn, mean, log_scale, int(k), num_draws)
        snr.append(tuple(gradient_snr(g) for g in grads))
        se.append(tuple(gradient_snr_se(g) for g in grads))
    stack = lambda rows: tuple(jnp.stack(column) for column in zip(*rows))
    return SNRCurve(np.asarray(num_samples), stack(snr), stack(se))


def log_log_slope(num_samples, snr, se) -> tuple[jax.Array, jax.Array]:
    r"""Weighted least-squares slope $b$ of $\log \mathrm{SNR} = a + b \log K$, and its SE.

    Each point $i$ is weighted by $(\mathrm{SNR}_i / \mathrm{se}_i)^2$, the inverse variance of
    $\log \mathrm{SNR}_i$ (the delta method). ``num_samples`` (G,), G sample counts; ``snr``,
    ``se`` (G, ...); returns the slope and
    its standard error, each ``(...)``. The SE is the sampling error of the points alone: a curve
    that is not a straight line on log-log axes has a slope that depends on the range of K.
    Rainforth et al.'s result for the standard IWAE proposal gradient is $b \to -\tfrac12$.
    """
    x = jnp.log(jnp.asarray(num_samples, jnp.result_type(float)))
    x = x.reshape(x.shape + (1,) * (snr.ndim - 1))
    y = jnp.log(snr)
    weight = (snr / se) ** 2
    total = jnp.sum(weight, axis=0)
    x_bar = jnp.sum(weight * x, axis=0) / total
    y_bar = jnp.sum(weight * y, axis=0) / total
    sxx = jnp.sum(weight * (x - x_bar[None]) ** 2, axis=0)
    slope = jnp.sum(weight * (x - x_bar[None]) * (y - y_bar[None]), axis=0) / sxx
    return slope, 1.0 / jnp.sqrt(sxx)
