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


def test_jit(key):
    jax.jit(T.funnel_log_prob)(jnp.zeros((4, 2)))
    jax.jit(T.funnel_sample, static_argnums=1)(key, 4)
