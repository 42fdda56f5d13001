"""Checkers for chapter 4 (gradient estimators): the Gaussian score and the leave-one-out baseline."""
from __future__ import annotations

import numpy as np

from ._core import Feedback, compare, match_suspect

__all__ = ["reference_gaussian_score", "reference_leave_one_out", "check_gaussian_score",
           "check_leave_one_out"]


def reference_gaussian_score(z, mean, log_scale):
    r"""$\big(\nabla_\mu, \nabla_{\log s}\big) \log\mathcal N(z; \mu, \operatorname{diag} s^2)
    = \Big(\frac{z - \mu}{s^2},\ \frac{(z - \mu)^2}{s^2} - 1\Big)$, stacked: ``(2, d)``."""
    z, mean, log_scale = map(np.asarray, (z, mean, log_scale))
    standardised = (z - mean) * np.exp(-log_scale)
    return np.stack([standardised * np.exp(-log_scale), standardised**2 - 1.0])


def reference_leave_one_out(values):
    r"""$c_k = \frac{1}{K-1} \sum_{l \ne k} f_l$, $f_l = f(z_l)$, for ``values`` ``(K,)``."""
    values = np.asarray(values)
    return (np.sum(values) - values) / (values.shape[0] - 1)


def _score_cases():
    rng = np.random.default_rng(5)
    cases = []
    for dim in (1, 3):
        mean = rng.normal(0.0, 1.0, dim).astype(np.float32)
        log_scale = rng.normal(0.0, 0.4, dim).astype(np.float32)
        z = (mean + np.exp(log_scale) * rng.normal(0.0, 1.0, dim)).astype(np.float32)
        cases.append((z, mean, log_scale))
    return cases


def _diagnose_score(got, want, args):
    z, mean, log_scale = (np.asarray(a, np.float64) for a in args)
    var = np.exp(2 * log_scale)
    if not np.allclose(got[0], want[0], rtol=1e-4, atol=1e-4):
        if np.allclose(got[0], -want[0], rtol=1e-4, atol=1e-4):
            return ("the mean's score has the wrong sign: it is (z - mu) / s^2, pointing from the "
                    "mean towards the sample (source 002's toy problem writes (phi - z), the same slip).")
        if np.allclose(got[0], (z - mean) / np.exp(log_scale), rtol=1e-4, atol=1e-4):
            return "the mean's score divides by the variance s^2, not by the scale s."
        if np.allclose(got[0], 0.5 * (mean - z), rtol=1e-4, atol=1e-4):
            return ("(1/2)(phi - z) is source 002's formula: both its sign and its factor are wrong; "
                    "differentiate -(z - mu)^2 / (2 s^2) with respect to mu.")
        return None
    if np.allclose(got[1], want[1] + 1.0, rtol=1e-4, atol=1e-4):
        return ("the log-scale score misses the -1 from the normaliser: log N contains -log s, "
                "whose derivative in log s is -1.")
    if np.allclose(got[1], ((z - mean) ** 2 / var - 1.0) / np.exp(log_scale), rtol=1e-4, atol=1e-4):
        return ("that is the derivative with respect to s; with respect to log s multiply "
                "by s (chain rule).")
    if np.allclose(got[1], -want[1], rtol=1e-4, atol=1e-4):
        return "the log-scale score has the wrong sign: it is (z - mu)^2 / s^2 - 1."
    return None


def check_gaussian_score(score_fn) -> Feedback:
    """Check ``score_fn(z, mean, log_scale) -> (d_mean, d_log_scale)``, each ``(d,)``."""
    return compare(score_fn, reference_gaussian_score, _score_cases(), _diagnose_score,
                   success="your Gaussian score matches the reference.")


def _loo_cases():
    rng = np.random.default_rng(6)
    return [(np.array([1.0, 2.0], np.float32),),
            (rng.normal(1.0, 2.0, 5).astype(np.float32),),
            (rng.normal(-3.0, 1.0, 64).astype(np.float32),)]


def _diagnose_loo(got, want, args):
    (values,) = (np.asarray(a, np.float64) for a in args)
    num = values.shape[0]
    suspects = [
        (np.full(num, values.mean()),
         "your baseline includes the sample itself (the plain mean): then c_k depends on z_k and "
         "the estimator is biased by a factor (K - 1) / K. Leave sample k out."),
        ((values.sum() - values) / num, "divide the sum of the other K - 1 values by K - 1, not K."),
        (values.sum() - values, "that is the sum of the others; the baseline is their mean."),
        (values, "the baseline for sample k must not be f(z_k) itself: that makes every term zero."),
    ]
    return match_suspect(got, suspects)


def check_leave_one_out(baseline_fn) -> Feedback:
    """Check ``baseline_fn(values) -> (K,)`` against :func:`reference_leave_one_out`."""
    return compare(baseline_fn, reference_leave_one_out, _loo_cases(), _diagnose_loo,
                   success="your leave-one-out baseline matches the reference.")
