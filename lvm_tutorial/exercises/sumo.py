"""Checkers for chapter 6 (Russian roulette and SUMO).

- :func:`check_roulette_sum`: $\\sum_{j=1}^{J} a_j / P(J \\ge j)$ for one draw of $J$.
- :func:`check_sumo`: SUMO from one example's log-weights, a number of terms $J$ and the
  minimum $m$, with the weights $1/P(J \\ge j)$ of :func:`lvm_tutorial.estimators.tail_survival`.
- :func:`check_tail_rate`: a design exercise, the geometric rate $b$ of SUMO's tail that meets a
  budget of expected samples, $m + H_{\\alpha-1} + 1/(\\alpha b) = T$.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..estimators import iwae_bounds, sumo_from_log_weights, tail_survival
from ..roulette import geometric_survival, roulette_sum
from ._core import Feedback, compare, match_suspect

__all__ = ["check_roulette_sum", "check_sumo", "check_tail_rate", "tail_rate_for_budget"]


def _roulette_cases():
    length = 12
    terms = jnp.asarray(0.6 ** np.arange(length) * np.cos(np.arange(length)), jnp.float32)
    survival = geometric_survival(jnp.arange(1, length + 1), 0.7)
    return [(terms, k, survival) for k in (1, 2, 5, 12)]


def _diagnose_roulette(got, want, args):
    terms, survival = np.asarray(args[0], np.float64), np.asarray(args[2], np.float64)
    k = int(args[1])
    weighted = terms / survival
    known = {
        "you return the plain partial sum: divide each term a_j by P(J >= j), or the estimate "
        "is biased low by every term you did not reach.": terms[:k].sum(),
        "multiply? The weight is 1 / P(J >= j): divide each term by the survival probability.":
            (terms * survival)[:k].sum(),
        "you summed one term too many: the estimate uses j = 1, ..., J.": weighted[:k + 1].sum(),
        "you summed one term too few: the estimate uses j = 1, ..., J (J itself included).":
            weighted[:k - 1].sum(),
        "you summed every term you were given: stop at J.": weighted.sum(),
    }
    for hint, value in known.items():
        if np.allclose(got, value, rtol=1e-4, atol=1e-5):
            return hint
    return None


def check_roulette_sum(roulette_fn) -> Feedback:
    """``roulette_fn(terms, num_terms, survival)`` with ``terms`` and ``survival`` of shape (L,)
    and an integer ``num_terms`` J; returns a scalar."""
    return compare(roulette_fn, roulette_sum, _roulette_cases(), _diagnose_roulette,
                   success="your roulette estimate matches lvm_tutorial.roulette.roulette_sum.")


def _sumo_cases():
    keys = jax.random.split(jax.random.key(6), 3)
    short = 1.5 * jax.random.normal(keys[0], (14,))
    long = jax.random.normal(keys[1], (110,))           # J = 100 reaches the geometric tail
    return [(short, 1, 3), (short, 6, 3), (long, 100, 5)]


def _diagnose_sumo(got, want, args):
    log_w, k, m = np.asarray(args[0], np.float64), int(args[1]), int(args[2])
    bounds = np.asarray(iwae_bounds(jnp.asarray(log_w)), np.float64)
    deltas = bounds[m:m + k] - bounds[m - 1:m + k - 1]             # Delta_1, ..., Delta_J
    j = np.arange(1, k + 1)

    def weight(index):
        return 1.0 / np.asarray(tail_survival(jnp.asarray(index)), np.float64)

    known = {
        "you divide the j-th correction by P(J >= m + j), as source 001 does: the roulette weight "
        "belongs to the j-th term of the random part of the series, 1 / P(J >= j). The offset "
        "weights are larger, and bias the estimate upwards.":
            bounds[m - 1] + np.sum(deltas * weight(m + j)),
        "your estimate is IWAE_{m+J}: the corrections need their weights 1 / P(J >= j).":
            bounds[m + k - 1],
        "the base term IWAE_m is missing: SUMO = IWAE_m + the weighted corrections.":
            np.sum(deltas * weight(j)),
        "your weights are shifted by one: the j-th correction IWAE_{m+j} - IWAE_{m+j-1} is "
        "divided by P(J >= j), with j = 1 for the first.":
            bounds[m - 1] + np.sum(deltas * weight(j + 1)),
    }
    for hint, value in known.items():
        if np.allclose(got, value, rtol=1e-4, atol=1e-4):
            return hint
    for kk in (k - 1, k + 1):
        if 0 <= kk and m + kk <= len(log_w):
            jj = np.arange(1, kk + 1)
            d = bounds[m:m + kk] - bounds[m - 1:m + kk - 1]
            if np.allclose(got, bounds[m - 1] + np.sum(d * weight(jj)), rtol=1e-4, atol=1e-4):
                return "you used one correction too many or too few: j runs over 1, ..., J."
    return None


def check_sumo(sumo_fn) -> Feedback:
    """``sumo_fn(log_weights, num_terms, min_terms)`` for ONE example: ``log_weights`` (L,),
    integers J and m with m + J <= L; returns a scalar (the default tail, alpha = 80, b = 0.1)."""
    reference = jax.jit(sumo_from_log_weights, static_argnums=2)        # one compile per shape
    return compare(sumo_fn, reference, _sumo_cases(), _diagnose_sumo,
                   success="your SUMO matches lvm_tutorial.sumo_from_log_weights, past J = 80 too.")


def tail_rate_for_budget(budget: float, min_terms: int, alpha: int = 80) -> float:
    r"""The rate $b$ of SUMO's geometric tail that spends ``budget`` samples on average.

    With $P(J \ge j) = 1/j$ below $\alpha$ and $\frac1\alpha (1-b)^{j-\alpha}$ from $\alpha$ on,
    $\mathbb E[J] = H_{\alpha-1} + 1/(\alpha b)$ (:func:`lvm_tutorial.estimators.expected_num_terms`),
    so $m + \mathbb E[J] = T$, with $T$ = ``budget``, gives

    $$b = \frac{1}{\alpha\,(T - m - H_{\alpha-1})}.$$

    A ``ValueError`` when the budget does not exceed $m + H_{\alpha-1}$ (the head of the tail
    alone spends that much) or $b$ would leave $(0, 1)$.
    """
    head = math.fsum(1.0 / k for k in range(1, int(alpha)))                  # H_{alpha-1}
    room = float(budget) - int(min_terms) - head
    if room <= 1.0 / alpha:
        raise ValueError(f"a budget of {budget} samples leaves {room:.3g} for the geometric part; "
                         f"it needs more than 1/alpha = {1.0 / alpha:.3g}")
    return 1.0 / (alpha * room)


def _tail_rate_cases():
    return [(10.078, 5, 80), (12.0, 5, 80), (20.0, 10, 80), (6.0, 2, 20)]


def _diagnose_tail_rate(got, want, args):
    budget, m, alpha = args
    harmonic = sum(1.0 / k for k in range(1, alpha))
    suspects = [
        (1.0 / (alpha * (budget - harmonic)),
         "the budget counts all m + J samples: subtract the m fixed terms before the tail's share."),
        (1.0 / (alpha * (budget - m - harmonic - 1.0 / alpha)),
         "the head sums 1/k for k = 1, ..., alpha - 1 (H_{alpha-1}); from alpha on the tail is "
         "geometric, and its sum 1/(alpha b) already counts P(J >= alpha)."),
        (1.0 / (budget - m - harmonic),
         "the geometric part contributes 1/(alpha b), not 1/b: it starts at P(J >= alpha) = 1/alpha."),
        (1.0 / (alpha * (budget - m)),
         "E[J] includes the head: H_{alpha-1} = sum of 1/k for k < alpha, about 4.95 for alpha = 80."),
        (alpha * (budget - m - harmonic),
         "that is 1/b: solve 1/(alpha b) = T - m - H_{alpha-1} for b."),
    ]
    return match_suspect(got, suspects, rtol=1e-3, atol=1e-6)


def check_tail_rate(rate_fn) -> Feedback:
    """``rate_fn(budget, min_terms, alpha)``: the rate b with m + E[J] = T, the budget (a float)."""
    return compare(rate_fn, tail_rate_for_budget, _tail_rate_cases(), _diagnose_tail_rate,
                   rtol=1e-3, atol=1e-6,
                   success="your rate meets the budget: m + E[J] equals T for each case.")
