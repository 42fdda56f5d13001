"""Checkers for chapter 1 (mixtures): the exact log-likelihood and the responsibilities.

Each ``check_*`` runs the reader's function beside the reference on a few cases, including a
point far from every component (where exponentiating underflows in float32) and unnormalised
logits, and turns the first disagreement into a hint about the likely mistake.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ..distributions import diag_normal_log_prob, mixture_log_prob, mixture_posterior
from ._core import Feedback, compare

__all__ = ["check_mixture_log_prob", "check_responsibilities", "mixture_cases"]


def mixture_cases() -> list[tuple[jax.Array, jax.Array, jax.Array, jax.Array]]:
    """Argument tuples ``(x (D,), logits (C,), means (C, D), log_scales (C, D))`` for the checkers.

    A point between the components, one far from all of them (every density underflows in
    float32), and unnormalised logits (``logits`` are not log-probabilities).
    """
    logits = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    means = jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
    log_scales = jnp.log(jnp.array([[0.6, 0.4], [0.5, 0.8], [0.7, 0.3]]))
    return [
        (jnp.array([0.3, 1.2]), logits, means, log_scales),
        (jnp.array([25.0, -30.0]), logits, means, log_scales),
        (jnp.array([-0.5, 1.5]), jnp.array([1.0, 2.5, -0.5]), means, log_scales),
    ]


def _component_log_densities(x, means, log_scales):
    return diag_normal_log_prob(x[None, :], means, log_scales)


def _close(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-5))


def _diagnose_log_prob(got, want, args) -> str | None:
    x, logits, means, log_scales = args
    log_dens = _component_log_densities(x, means, log_scales)
    if not np.all(np.isfinite(got)) and np.all(np.isfinite(want)):
        return ("your result is not finite at x = {}, far from every component: each "
                "pi_c N(x; mu_c, sigma_c^2) underflows to 0 in float32 and log 0 = -inf. Stay in log "
                "space: jax.scipy.special.logsumexp(log pi + log N) never exponentiates a tiny "
                "number on its own.".format(np.asarray(x).tolist()))
    if _close(got, logsumexp(log_dens)):
        return ("you forgot the mixing weights: p(x) = sum_c pi_c N(x; mu_c, sigma_c^2), with "
                "log pi = jax.nn.log_softmax(logits).")
    if _close(got, logsumexp(logits + log_dens)):
        return ("you added the raw logits; they are not log-probabilities. Use "
                "log pi = jax.nn.log_softmax(logits).")
    log_pi = jax.nn.log_softmax(logits)
    if _close(got, jnp.sum(jnp.exp(log_pi) * log_dens)) or _close(got, jnp.mean(log_pi + log_dens)):
        return ("you averaged log-densities over the components; that is only a lower bound "
                "(Jensen). Average the densities, in log space: logsumexp(log pi + log N).")
    if _close(got, jnp.max(log_pi + log_dens)):
        return "you kept only the largest component (a max); logsumexp adds the others in."
    return None


def check_mixture_log_prob(log_prob_fn: Callable) -> Feedback:
    r"""Check ``log_prob_fn(x, logits, means, log_scales)`` computes, for one ``x`` (D,),

    $$\log p(x) = \log \sum_c \pi_c \, \mathcal N(x; \mu_c, \operatorname{diag}\sigma_c^2),
      \qquad \pi = \operatorname{softmax}(\text{logits}).$$
    """
    return compare(log_prob_fn, mixture_log_prob, mixture_cases(), _diagnose_log_prob,
                   success="your log-likelihood matches mixture_log_prob, far from the data too.")


def _diagnose_posterior(got, want, args) -> str | None:
    x, logits, means, log_scales = args
    if not np.all(np.isfinite(got)):
        return ("your responsibilities contain nan or inf at x = {}: far from every component, "
                "both numerator and p(x) underflow to 0, and 0/0 = nan. Normalise in log space: "
                "jax.nn.softmax(log pi + log N).".format(np.asarray(x).tolist()))
    total = float(np.sum(got))
    if abs(total - 1.0) > 1e-3:
        return (f"your responsibilities sum to {total:.4g}, not 1: divide each "
                "pi_c N(x; mu_c, sigma_c^2) by p(x), their sum over c (Bayes' rule).")
    log_dens = _component_log_densities(x, means, log_scales)
    if _close(got, jax.nn.softmax(log_dens)):
        return ("you forgot the prior: p(z = c | x) is proportional to pi_c N(x; mu_c, sigma_c^2), "
                "with pi = softmax(logits).")
    if _close(got, jax.nn.softmax(logits)):
        return ("you returned the prior pi: Bayes' rule multiplies it by the likelihood "
                "N(x; mu_c, sigma_c^2) before normalising.")
    return None


def check_responsibilities(posterior_fn: Callable) -> Feedback:
    r"""Check ``posterior_fn(x, logits, means, log_scales)`` returns, for one ``x`` (D,), the ``(C,)``

    $$p(z = c \mid x) = \frac{\pi_c \mathcal N(x; \mu_c, \sigma_c^2)}{\sum_{c'} \pi_{c'} \mathcal N(x; \mu_{c'}, \sigma_{c'}^2)}.$$
    """
    return compare(posterior_fn, mixture_posterior, mixture_cases(), _diagnose_posterior,
                   success="your responsibilities match mixture_posterior and sum to one.")
