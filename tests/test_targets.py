import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lvm_tutorial import targets as T


def test_funnel_log_prob_matches_scipy():
    x = np.random.default_rng(0).normal(size=(20, 2)) * [3.0, 1.5]
    want = stats.norm.logpdf(x[:, 0], 0, np.exp(x[:, 1])) + stats.norm.logpdf(x[:, 1], 0, 1.35)
    np.testing.assert_allclose(T.funnel_log_prob(jnp.asarray(x)), want, rtol=1e-5)


def test_funnel_samples(key):
    n = 200_000
    x = np.asarray(T.funnel_sample(key, n))
    assert x.shape == (n, 2)
    assert abs(x[:, 1].mean()) < 5 * 1.35 / math.sqrt(n)                 # 5 SE: ~6e-7
    assert abs(x[:, 1].std() - 1.35) < 5 * 1.35 / math.sqrt(2 * n)
    standardised = x[:, 0] / np.exp(x[:, 1])                              # N(0, 1) given x1
    assert stats.kstest(standardised, "norm").pvalue > 1e-6              # false alarms 1e-6
    assert stats.kstest(x[:, 1], "norm", args=(0, 1.35)).pvalue > 1e-6
    # negative control: treating exp(x1) as the variance instead of the scale is caught
    assert stats.kstest(x[:, 0] / np.exp(x[:, 1] / 2), "norm").pvalue < 1e-6


def test_bad_inputs(key):
    with pytest.raises(ValueError, match="x must have a last axis of size 2"):
        T.funnel_log_prob(jnp.zeros(3))
    with pytest.raises(ValueError, match="num_samples"):
        T.funnel_sample(key, 0)


def test_jit_gives_the_eager_values(key):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 2)))
    np.testing.assert_allclose(jax.jit(T.funnel_log_prob)(x), T.funnel_log_prob(x), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(T.funnel_sample, static_argnums=1)(key, 4),
                               T.funnel_sample(key, 4), rtol=1e-6)


def test_x1_distances_and_neck():
    x1 = np.random.default_rng(1).normal(0.1, 1.5, size=500)
    samples = np.stack([np.zeros_like(x1), x1], axis=1)
    want_ks = stats.kstest(x1, "norm", args=(0, 1.35)).statistic
    assert abs(T.x1_ks(samples) - want_ks) < 1e-12
    # the statistic by hand: sup |F_n - Phi| at the jumps of F_n
    x = np.sort(x1)
    cdf = stats.norm.cdf(x, scale=1.35)
    by_hand = max(np.max(np.arange(1, 501) / 500 - cdf), np.max(cdf - np.arange(500) / 500))
    assert abs(T.x1_ks(samples) - by_hand) < 1e-12
    # negative control: the statistic against the wrong scale differs
    assert abs(T.x1_ks(samples, scale=1.0) - want_ks) > 1e-2
    # W1 = integral of |F_n - Phi| over the line, by quadrature
    grid = np.linspace(-12, 12, 400_001)
    f_n = np.searchsorted(np.sort(x1), grid, side="right") / len(x1)
    want_w1 = np.trapezoid(np.abs(f_n - stats.norm.cdf(grid, scale=1.35)), grid)
    assert abs(T.x1_wasserstein(samples) - want_w1) < 1e-4
    quantiles = stats.norm.ppf((np.arange(2000) + 0.5) / 2000) * 1.35   # nearly the target itself
    assert T.x1_wasserstein(np.stack([quantiles * 0, quantiles], 1)) < 2e-3
    assert abs(T.EXACT_NECK_FRACTION - stats.norm.cdf(-2 / 1.35)) < 1e-12
    assert T.neck_fraction(samples) == np.mean(x1 < -2)
    with pytest.raises(ValueError, match="samples"):
        T.x1_ks(np.zeros(5))
