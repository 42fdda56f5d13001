"""Checkers for chapter 7 (density matching on the funnel).

- :func:`check_funnel_log_prob`: the funnel's log-density,
  $\\log \\mathcal N(x_0; 0, e^{2x_1}) + \\log \\mathcal N(x_1; 0, 1.35^2)$.
- :func:`check_reverse_kl`: the Monte Carlo reverse KL from the two log-densities of model samples.
- :func:`check_neck_mass`: the exact probability $P(x_1 < -2)$ of the funnel's neck.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm
from scipy.special import ndtr

from ..targets import FUNNEL_SCALE, funnel_log_prob
from ._core import Feedback, compare

__all__ = ["check_funnel_log_prob", "check_reverse_kl", "check_neck_mass"]


def _funnel_cases():
    keys = jax.random.split(jax.random.key(70), 2)
    return [
        (jnp.array([[0.5, -1.0], [2.0, 1.5], [-0.1, -3.0]]),),
        (jax.random.normal(keys[0], (50, 2)) * jnp.array([[3.0, 1.35]]),),
    ]


def _funnel_variants(x):
    x = np.asarray(x, dtype=np.float64)
    x0, x1 = x[..., 0], x[..., 1]

    def log_n(v, scale):
        return -0.5 * np.log(2 * np.pi) - np.log(scale) - 0.5 * (v / scale) ** 2

    return {
        "variance": log_n(x0, np.exp(x1 / 2)) + log_n(x1, FUNNEL_SCALE),
        "scale_as_variance": log_n(x0, np.exp(x1)) + log_n(x1, math.sqrt(FUNNEL_SCALE)),
        "swapped": log_n(x1, np.exp(x0)) + log_n(x0, FUNNEL_SCALE),
        "conditional_only": log_n(x0, np.exp(x1)),
        "neal": log_n(x0, np.exp(x1 / 2)) + log_n(x1, 3.0),
    }


def _diagnose_funnel(got, want, args):
    variants = _funnel_variants(args[0])
    close = lambda name: np.allclose(got, variants[name], rtol=1e-4, atol=1e-4)
    if close("variance"):
        return ("you used exp(x1) as the variance of x0; in this funnel exp(x1) is its standard "
                "deviation (the variance is exp(2 x1)). norm.logpdf takes a scale, not a variance.")
    if close("scale_as_variance"):
        return "x1 has standard deviation 1.35 (variance 1.35**2); you passed sqrt(1.35) as its scale."
    if close("swapped"):
        return "x1 (the last coordinate) sets the width of x0 (the first); you swapped the two."
    if close("conditional_only"):
        return ("you returned log p(x0 | x1) only; the joint adds the marginal of x1, "
                "log N(x1; 0, 1.35**2).")
    if close("neal"):
        return ("that is the scale of Neal's original funnel (v ~ N(0, 3**2), x | v ~ N(0, e**v)); "
                "the sources' 2-D variant has x1 ~ N(0, 1.35**2) and x0 | x1 ~ N(0, e**(2 x1)).")
    return None


def check_funnel_log_prob(log_prob_fn) -> Feedback:
    """``log_prob_fn(x)`` for ``x`` of shape ``(N, 2)`` returns ``(N,)`` log-densities."""
    return compare(log_prob_fn, funnel_log_prob, _funnel_cases(), _diagnose_funnel,
                   success="your log-density matches lvm_tutorial.funnel_log_prob.")


def _reverse_kl(log_p_model, log_p_target):
    return jnp.mean(log_p_model - log_p_target)


def _kl_cases():
    keys = jax.random.split(jax.random.key(71), 2)
    model = jax.random.normal(keys[0], (64,)) - 2.0
    target = model - jnp.abs(jax.random.normal(keys[1], (64,))) - 0.5
    return [(model, target), (model[:7], target[:7] + 3.0)]


def _diagnose_kl(got, want, args):
    model, target = (np.asarray(a, dtype=np.float64) for a in args)
    diff = model - target
    if np.allclose(got, -want, rtol=1e-4, atol=1e-5):
        return ("your sign is flipped: that is E_p[log p* - log p], the negative of the reverse KL. "
                "The model's own log-density comes first: mean(log p_model - log p_target).")
    if np.allclose(got, diff.sum(), rtol=1e-4, atol=1e-5):
        return "you summed over the samples; the Monte Carlo estimate averages them."
    if np.allclose(got, np.mean(np.exp(model) - np.exp(target)), rtol=1e-4, atol=1e-6):
        return "stay with log-densities: the KL averages log p - log p*, not p - p*."
    if np.allclose(got, np.mean(np.exp(model) * diff), rtol=1e-4, atol=1e-6):
        return ("the samples already come from the model: averaging log p - log p* over them "
                "is the expectation, so do not weight by p(x) again.")
    return None


def check_reverse_kl(reverse_kl_fn) -> Feedback:
    r"""``reverse_kl_fn(log_p_model, log_p_target)``: both ``(N,)`` at model samples $x_n \sim p_\theta$,
    returns the estimate of $\mathrm{KL}(p_\theta \| p^*)$, a scalar."""
    return compare(reverse_kl_fn, _reverse_kl, _kl_cases(), _diagnose_kl,
                   success="your estimate is the average of log p_model - log p_target.")


def _diagnose_neck(got, want, args):
    got = float(np.asarray(got))
    if math.isclose(got, ndtr(-2.0), rel_tol=1e-4):
        return "you used a standard normal; x1 has standard deviation 1.35."
    if math.isclose(got, ndtr(-2.0 / math.sqrt(FUNNEL_SCALE)), rel_tol=1e-4):
        return "1.35 is the standard deviation of x1, not its variance: divide -2 by 1.35."
    if math.isclose(got, 2 * float(want), rel_tol=1e-4):
        return "you counted both tails (|x1| > 2); the neck is only x1 < -2."
    if math.isclose(got, 1 - float(want), rel_tol=1e-4):
        return "that is P(x1 > -2), the complement; the neck is x1 < -2."
    return None


def check_neck_mass(neck_fn) -> Feedback:
    r"""``neck_fn()`` returns $P(x_1 < -2)$ under the funnel, a number (use ``jax.scipy.stats.norm.cdf``)."""
    return compare(neck_fn, lambda: norm.cdf(-2.0 / FUNNEL_SCALE), [()], _diagnose_neck,
                   success="the exact neck mass is Phi(-2 / 1.35).")
