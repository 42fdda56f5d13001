"""Chapter 6's checkers: the reference passes, each known mistake gets its hint."""
import jax.numpy as jnp

import pytest

from lvm_tutorial.estimators import Tail, expected_num_terms, iwae_bounds, tail_survival
from lvm_tutorial.exercises.sumo import (
    check_roulette_sum,
    check_sumo,
    check_tail_rate,
    tail_rate_for_budget,
)


def _stub(*args):
    raise NotImplementedError("your code here")


def test_roulette_checker():
    def good(terms, k, survival):
        return jnp.sum((terms / survival)[:k])

    assert check_roulette_sum(good).passed
    wrong = {
        "plain partial sum": lambda t, k, s: jnp.sum(t[:k]),
        "multiply": lambda t, k, s: jnp.sum((t * s)[:k]),
        "one term too many": lambda t, k, s: jnp.sum((t / s)[:k + 1]),
        "one term too few": lambda t, k, s: jnp.sum((t / s)[:k - 1]),
        "stop at J": lambda t, k, s: jnp.sum(t / s),
    }
    for hint, fn in wrong.items():
        feedback = check_roulette_sum(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
    assert "NotImplementedError" in check_roulette_sum(_stub).message


def _sumo(log_w, k, m, weight_index, base=True, weighted=True, num=None):
    bounds = iwae_bounds(log_w)
    num = k if num is None else num
    deltas = bounds[m:m + num] - bounds[m - 1:m + num - 1]
    j = jnp.arange(1, num + 1)
    weights = 1.0 / tail_survival(weight_index(j, m)) if weighted else 1.0
    return (bounds[m - 1] if base else 0.0) + jnp.sum(deltas * weights)


def test_sumo_checker():
    assert check_sumo(lambda lw, k, m: _sumo(lw, k, m, lambda j, m: j)).passed
    wrong = {
        "P(J >= m + j), as source 001": lambda lw, k, m: _sumo(lw, k, m, lambda j, m: m + j),
        "your estimate is IWAE_{m+J}": lambda lw, k, m: _sumo(lw, k, m, None, weighted=False),
        "base term IWAE_m is missing": lambda lw, k, m: _sumo(lw, k, m, lambda j, m: j, base=False),
        "shifted by one": lambda lw, k, m: _sumo(lw, k, m, lambda j, m: j + 1),
        "too many or too few": lambda lw, k, m: _sumo(lw, k, m, lambda j, m: j, num=k + 1),
    }
    for hint, fn in wrong.items():
        feedback = check_sumo(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
    assert "NotImplementedError" in check_sumo(_stub).message


def test_tail_rate_meets_the_budget_of_the_package_tail():
    """The rate it returns, put back into the closed-form E[K], spends exactly the budget."""
    for budget, m, alpha in [(10.078, 5, 80), (12.0, 5, 80), (6.0, 2, 20)]:
        b = tail_rate_for_budget(budget, m, alpha)
        assert 0.0 < b < 1.0
        assert abs(m + expected_num_terms(Tail(alpha, b)) - budget) < 1e-9
    assert abs(tail_rate_for_budget(5 + expected_num_terms(), 5) - Tail().b) < 1e-12
    with pytest.raises(ValueError):
        tail_rate_for_budget(9.9, 5, 80)          # 5 + H_79 = 9.95: no room for a tail


def test_tail_rate_checker():
    assert check_tail_rate(tail_rate_for_budget).passed

    def harmonic(alpha):
        return sum(1.0 / k for k in range(1, alpha))

    wrong = {
        "subtract the m fixed terms": lambda B, m, a: 1 / (a * (B - harmonic(a))),
        "H_{alpha-1}); from alpha on": lambda B, m, a: 1 / (a * (B - m - harmonic(a + 1))),
        "not 1/b": lambda B, m, a: 1 / (B - m - harmonic(a)),
        "E[J] includes the head": lambda B, m, a: 1 / (a * (B - m)),
        "that is 1/b": lambda B, m, a: a * (B - m - harmonic(a)),
    }
    for hint, fn in wrong.items():
        feedback = check_tail_rate(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
    assert "NotImplementedError" in check_tail_rate(_stub).message
