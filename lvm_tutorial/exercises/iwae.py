"""Checkers for chapter 5 (importance-weighted bounds).

- :func:`check_iwae_bound`: $\\mathrm{IWAE}_K = \\log \\frac1K \\sum_k w_k$ from log-weights.
- :func:`check_log_weight`: the log importance weight of ONE latent sample, vmapped by the checker.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from .. import linear_gaussian as lg
from ..distributions import diag_normal_log_prob
from ..estimators import iwae_bound
from ._core import Feedback, compare, match_suspect

__all__ = ["check_iwae_bound", "check_log_weight"]


def _iwae_cases():
    keys = jax.random.split(jax.random.key(5), 3)
    return [
        (jax.random.normal(keys[0], (6,)),),                    # one bound, K = 6
        (2.0 * jax.random.normal(keys[1], (3, 40)) - 1.0,),     # a batch of 3 bounds, K = 40
        (jax.random.normal(keys[2], (2, 5)) - 300.0,),          # far below 0: exp underflows
        (jax.random.normal(keys[2], (2, 5)) + 120.0,),          # far above 0: exp overflows
    ]


def _diagnose_iwae(got, want, args):
    (log_w,) = args
    log_w = np.asarray(log_w, dtype=np.float64)
    num = log_w.shape[-1]
    lse = np.asarray(logsumexp(log_w, axis=-1))
    if not np.all(np.isfinite(got)):
        return ("your result is not finite for log-weights far from 0: exp() under- or overflows "
                "in float32. Stay in log space with jax.scipy.special.logsumexp.")
    return match_suspect(got, [
        (log_w.mean(-1), "you averaged the log-weights: that is the ELBO estimate, which does not "
                         "tighten as K grows. Average the weights themselves, in log space: "
                         "logsumexp(log_w) - log K."),
        (lse, "your result is too high by log K: you summed the weights; IWAE averages them."),
        (lse - 2 * np.log(num), "your bound decreases as K grows: you subtract log K twice. "
                                "Are you averaging weights in log space exactly once?"),
        (log_w.max(-1), "you kept only the largest log-weight; logsumexp keeps all of them."),
    ])


def check_iwae_bound(iwae_fn) -> Feedback:
    """``iwae_fn(log_weights)`` over the last axis, shape ``(..., K)`` to ``(...)``."""
    return compare(iwae_fn, iwae_bound, _iwae_cases(), _diagnose_iwae,
                   success="your bound matches lvm_tutorial.iwae_bound, also far from 0.")


def _log_weight_setup():
    model = lg.make_linear_gaussian(jax.random.key(11), 3, 2)
    x = jnp.array([0.3, -1.2, 0.8])
    q_mean, q_log_scale = jnp.array([0.2, -0.4]), jnp.array([-0.3, 0.1])
    z = q_mean[None] + jnp.exp(q_log_scale)[None] * jax.random.normal(jax.random.key(12), (7, 2))
    return model, x, q_mean, q_log_scale, z


def check_log_weight(log_weight_fn) -> Feedback:
    r"""``log_weight_fn(z, x, model, q_mean, q_log_scale)`` for ONE ``z`` (d,) returns
    $\log p(x \mid z) + \log p(z) - \log q(z)$, a scalar; the checker ``vmap`` s it over 7 samples
    of a linear-Gaussian model.
    """
    model, x, q_mean, q_log_scale, z = _log_weight_setup()
    log_lik = diag_normal_log_prob(x, z @ model.weight.T + model.bias[None],
                                   jnp.broadcast_to(model.log_scale, (z.shape[0], x.shape[0])))
    log_prior = diag_normal_log_prob(z, 0.0, jnp.zeros(2))
    log_q = diag_normal_log_prob(z, q_mean, q_log_scale)

    def batched(fn):
        return lambda z: jax.vmap(fn, (0, None, None, None, None))(z, x, model, q_mean, q_log_scale)

    def reference(z):
        return lg.log_joint(model, x, z) - diag_normal_log_prob(z, q_mean, q_log_scale)

    def diagnose(got, want, args):
        known = {
            "you return log p(x, z): divide by q, i.e. subtract log q(z).": log_lik + log_prior,
            "the sign of log q(z) is flipped: the weight is p(x, z) / q(z).":
                log_lik + log_prior + log_q,
            "the prior log p(z) is missing: p(x, z) = p(x | z) p(z).": log_lik - log_q,
        }
        for hint, value in known.items():
            if np.allclose(got, value, rtol=1e-4, atol=1e-4):
                return hint
        return None

    candidate = batched(log_weight_fn)
    try:
        with jax.numpy_rank_promotion("allow"):              # the reader's code, as in compare
            candidate(z)
    except Exception as err:  # the reader's code, e.g. Python control flow on a traced z
        return Feedback(False, f"your function does not run under jax.vmap over z: "
                               f"{type(err).__name__}: {err}. Write it for one z with jnp operations.")
    return compare(candidate, reference, [(z,)], diagnose,
                   success="your per-sample log-weight, vmapped over z, matches the package's.")
