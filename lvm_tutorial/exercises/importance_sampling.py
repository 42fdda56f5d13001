"""Checkers for chapter 2 (importance sampling): the log-space estimate, the effective sample
size, and the moments of the weights under a shifted proposal (a derivation).

The cases of the first two include log-weights near -1000, where exponentiating underflows to 0
in float32, so only a log-space implementation passes.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ..estimators import effective_sample_size, iwae_bound
from ._core import Feedback, compare, match_suspect

__all__ = ["check_log_importance_estimate", "check_effective_sample_size", "log_weight_cases",
           "reference_log_shifted_moment", "check_log_shifted_moment"]


def log_weight_cases() -> list[tuple[jax.Array]]:
    """One-argument cases ``(log_weights (K,),)``: spread-out weights, weights near -1000
    (they underflow when exponentiated), one dominant weight, and equal weights."""
    key = jax.random.key(20)
    noise = jax.random.normal(key, (50,))
    return [
        (2.0 * noise - 3.0,),
        (noise - 1000.0,),
        (jnp.concatenate([jnp.array([5.0]), noise[:19] - 4.0]),),
        (jnp.full((8,), -2.5),),
    ]


def _close(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-5))


def _diagnose_estimate(got, want, args) -> str | None:
    (log_weights,) = args
    if not np.all(np.isfinite(got)) and np.all(np.isfinite(want)):
        return ("your estimate is not finite for log-weights near {:.0f}: exp of them underflows "
                "to 0 in float32. Use jax.scipy.special.logsumexp, which factors out the largest "
                "weight first.".format(float(jnp.max(log_weights))))
    if _close(got, jnp.mean(log_weights)):
        return ("you averaged the log-weights: that is E[log w], a lower bound (the ELBO). The "
                "importance-sampling estimate averages the weights themselves: log (1/K) sum_k w_k.")
    if _close(got, logsumexp(log_weights)):
        return "you returned log sum_k w_k; divide by K (subtract log K) to average."
    if _close(got, jnp.exp(iwae_bound(log_weights))):
        return "you returned the estimate of p(x); the exercise asks for its log."
    return None


def check_log_importance_estimate(log_estimate_fn: Callable) -> Feedback:
    r"""Check ``log_estimate_fn(log_weights)`` returns $\log \frac1K \sum_k w_k$ for ``(K,)`` log-weights."""
    return compare(log_estimate_fn, iwae_bound, log_weight_cases(), _diagnose_estimate,
                   success="your estimate matches log (1/K) sum_k w_k, even where the weights underflow.")


def _diagnose_ess(got, want, args) -> str | None:
    (log_weights,) = args
    num = log_weights.shape[-1]
    if not np.all(np.isfinite(got)) and np.all(np.isfinite(want)):
        return ("your ESS is not finite for log-weights near {:.0f}: the weights underflow. Normalise "
                "first, in log space: w_bar = jax.nn.softmax(log_weights), then 1 / sum w_bar^2."
                .format(float(jnp.max(log_weights))))
    w = jnp.exp(log_weights)
    normalised = jax.nn.softmax(log_weights)
    if _close(got, 1.0 / jnp.sum(w ** 2)):
        return ("you forgot to normalise the weights: ESS = 1 / sum_k w_bar_k^2 with "
                "w_bar = w / sum_k w_k (or, unnormalised, (sum w)^2 / sum w^2).")
    if _close(got, jnp.sum(normalised ** 2)):
        return "you returned sum_k w_bar_k^2; the ESS is its reciprocal."
    if _close(got, jnp.sum(log_weights) ** 2 / jnp.sum(log_weights ** 2)):
        return "you used the log-weights as if they were weights; exponentiate them (softmax normalises too)."
    if _close(got * num, want):
        return "you returned ESS / K, a fraction; the exercise asks for the ESS itself (between 1 and K)."
    if np.any(got > num + 1e-3) or np.any(got < 1 - 1e-3):
        return f"the ESS of K = {num} weights lies between 1 and K; yours is {float(np.max(got)):.4g}."
    return None


def check_effective_sample_size(ess_fn: Callable) -> Feedback:
    r"""Check ``ess_fn(log_weights)`` returns Kish's $(\sum_k w_k)^2 / \sum_k w_k^2$ for ``(K,)`` log-weights."""
    return compare(ess_fn, effective_sample_size, log_weight_cases(), _diagnose_ess,
                   success="your effective sample size matches, from one dominant weight to equal ones.")


def reference_log_shifted_moment(delta, order):
    r"""$\log \mathbb E_q[(w/p(x))^\nu] = \frac{\nu(\nu-1)}{2} \lVert\delta\rVert^2$ for a Gaussian
    posterior and the proposal $q$ of equal widths shifted by $\delta_i$ posterior standard
    deviations in coordinate $i$; ``delta`` ``(d,)``, ``order`` $\nu \ge 1$; returns a scalar."""
    delta = np.asarray(delta, np.float64)
    return order * (order - 1) / 2 * np.sum(delta**2)


def _shifted_cases():
    # the first case tells the usual slips apart (order 4, an asymmetric shift)
    return [(np.array([0.5, -1.0, 0.3], np.float32), 4),
            (np.array([2.0, 2.0], np.float32), 2),
            (np.array([1.5], np.float32), 3),
            (np.zeros(2, np.float32), 2),
            (np.array([0.7, -0.4], np.float32), 1)]


def _diagnose_shifted(got, want, args):
    delta, order = np.asarray(args[0], np.float64), args[1]
    sq, n = np.sum(delta**2), order
    suspects = [
        (np.exp(want), "that is the moment itself; the exercise asks for its logarithm (the "
                       "moments overflow float32 quickly: e^48 at delta = (2, 2), nu = 4)."),
        (n * (n - 1) * sq, "twice too large: the Gaussian exponent carries a factor 1/2, "
                           "exp(-(u - delta)^2 / 2), and it survives completing the square."),
        (n * n / 2 * sq, "the power is nu (nu - 1) / 2, not nu^2 / 2: p^nu / q^(nu-1) has nu - 1 "
                         "factors of q in the denominator, and with nu = 1 the mean weight is "
                         "exactly 1 (log 0)."),
        ((n - 1) / 2 * sq, "a factor nu is missing: completing the square in u leaves "
                           "(nu - 1)^2 delta^2 / 2 + (nu - 1) delta^2 / 2 = nu (nu - 1) delta^2 / 2."),
        (n * (n + 1) / 2 * sq, "the power is nu (nu - 1) / 2, not nu (nu + 1) / 2: the nu-th moment "
                               "is the integral of p^nu / q^(nu-1), with nu - 1 powers of q."),
        (n * (n - 1) / 2 * np.sum(np.abs(delta)), "the shift enters squared, |delta|^2 = "
                                                  "sum_i delta_i^2, not sum_i |delta_i|."),
        (n * (n - 1) / 2 * np.sum(delta) ** 2, "the coordinates are independent, so the logs "
                                               "add: sum_i delta_i^2, not (sum_i delta_i)^2."),
        (np.log(np.expm1(want)) if want > 0 else None, "that is log Var[w/p] = "
                                                       "log(E[(w/p)^2] - 1); the exercise asks "
                                                       "for the moment E[(w/p)^nu] itself."),
    ]
    return match_suspect(got, [(v, h) for v, h in suspects if v is not None])


def check_log_shifted_moment(log_moment_fn: Callable) -> Feedback:
    r"""Check ``log_moment_fn(delta, order)`` returns $\log \mathbb E_q[(w/p)^\nu]$ for the shifted
    proposal (:func:`reference_log_shifted_moment`)."""
    return compare(log_moment_fn, reference_log_shifted_moment, _shifted_cases(),
                   _diagnose_shifted, rtol=1e-5, atol=1e-5,
                   success="your log-moment matches nu (nu - 1) |delta|^2 / 2: the second "
                           "moment of the table's shifted proposal is e^8.")
