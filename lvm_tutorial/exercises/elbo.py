"""Checkers for chapter 3 (the ELBO): the Monte Carlo ELBO and the KL between diagonal Gaussians."""
from __future__ import annotations

import numpy as np

from ._core import Feedback, compare, match_suspect

__all__ = ["reference_elbo", "reference_diag_gaussian_kl", "check_elbo", "check_diag_gaussian_kl"]


def reference_elbo(log_joint, log_q):
    r"""$\hat{\mathcal L} = \frac1K \sum_k [\log p(x, z_k) - \log q(z_k)]$; both ``(K,)``, returns a scalar."""
    return np.mean(np.asarray(log_joint) - np.asarray(log_q))


def reference_diag_gaussian_kl(mean_q, log_scale_q, mean_p, log_scale_p):
    r"""$\mathrm{KL}(q\|p) = \sum_u \big[\log\sigma_{p,u} - \log s_u
    + \frac{s_u^2 + (\mu_u - \mu_{p,u})^2}{2\sigma_{p,u}^2} - \frac12\big]$ for
    $q = \mathcal N(\mu, \operatorname{diag} s^2)$, $p = \mathcal N(\mu_p, \operatorname{diag}\sigma_p^2)$;
    all four arguments ``(d,)``."""
    mean_q, log_scale_q, mean_p, log_scale_p = map(np.asarray, (mean_q, log_scale_q, mean_p, log_scale_p))
    var_ratio = np.exp(2 * (log_scale_q - log_scale_p))
    mahalanobis = (mean_q - mean_p) ** 2 * np.exp(-2 * log_scale_p)
    return np.sum(log_scale_p - log_scale_q + 0.5 * (var_ratio + mahalanobis) - 0.5)


def _elbo_cases():
    rng = np.random.default_rng(3)
    cases = []
    for num in (1, 5, 40):
        log_joint = rng.normal(-6.0, 2.0, num).astype(np.float32)
        log_q = rng.normal(-1.5, 1.0, num).astype(np.float32)
        cases.append((log_joint, log_q))
    return cases


def _diagnose_elbo(got, want, args):
    log_joint, log_q = (np.asarray(a, np.float64) for a in args)
    num = log_joint.shape[0]
    suspects = [
        (np.mean(log_q - log_joint), "your ELBO has the wrong sign: it is E_q[log p(x, z) - log q(z)], "
                                     "the log-joint minus the log-density of q."),
        (np.mean(log_joint), "you left out -log q(z): without it (the entropy of q) the bound "
                             "rewards a q that collapses onto the mode."),
        (np.mean(log_joint + log_q), "log q(z) enters with a minus sign: the weight is p(x, z) / q(z)."),
        (np.sum(log_joint - log_q), "you summed over the K samples; the ELBO is their average."),
        (np.logaddexp.reduce(log_joint - log_q) - np.log(num),
         "that is the importance-weighted bound log (1/K) sum_k w_k (chapter 5); the ELBO averages "
         "the log-weights instead of taking the log of the averaged weights."),
    ]
    return match_suspect(got, suspects)


def check_elbo(elbo_fn) -> Feedback:
    """Check ``elbo_fn(log_joint, log_q) -> scalar`` against :func:`reference_elbo`."""
    return compare(elbo_fn, reference_elbo, _elbo_cases(), _diagnose_elbo,
                   success="your Monte Carlo ELBO matches the reference.")


def _kl_cases():
    rng = np.random.default_rng(4)
    cases = []
    for dim in (1, 3):
        cases.append(tuple(rng.normal(0.0, 0.7, dim).astype(np.float32) for _ in range(4)))
    return cases


def _diagnose_kl(got, want, args):
    mq, sq, mp, sp = (np.asarray(a, np.float64) for a in args)
    suspects = [
        (reference_diag_gaussian_kl(mq, sq / 2, mp, sp / 2),
         "you treated log_scale as a log-variance. Here log_scale = log s (log sigma_p for p), so the variance is "
         "exp(2 * log_scale); source 001 writes logvar = 2 * log_scale."),
        (reference_diag_gaussian_kl(mp, sp, mq, sq), "you computed KL(p || q). The ELBO's gap is KL(q || p): the "
                                   "expectation is under q, and q's variance goes in the numerator."),
        (want + 0.5 * mq.size, "you left out the -1/2 per dimension (the KL of a distribution to "
                               "itself must be zero)."),
        (np.sum(sp - sq + 0.5 * (np.exp(2 * (sq - sp)) + (mq - mp) ** 2 * np.exp(-sp)) - 0.5),
         "the squared mean difference is divided by the variance sigma_p^2 = exp(2 log_scale_p), "
         "not by the scale."),
    ]
    return match_suspect(got, suspects)


def check_diag_gaussian_kl(kl_fn) -> Feedback:
    """Check ``kl_fn(mean_q, log_scale_q, mean_p, log_scale_p) -> scalar`` (KL(q || p))."""
    same = tuple(np.array([0.3, -0.2], np.float32) for _ in range(2)) * 2
    return compare(kl_fn, reference_diag_gaussian_kl, [same] + _kl_cases(), _diagnose_kl,
                   success="your KL between diagonal Gaussians matches the reference.")
