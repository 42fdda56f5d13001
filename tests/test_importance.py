"""Tests of lvm_tutorial.importance: the naive prior-sampling estimator and its diagnostics."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvm_tutorial.data import TRUE_MIXTURE
from lvm_tutorial.distributions import diag_normal_log_prob, mixture_log_prob
from lvm_tutorial.importance import (carrying_fraction, mixture_prior_log_weights,
                                     summarise_estimates)

X = jnp.array([0.5, 1.0])


def joint_log_weights(key, x, logits, means, log_scales, num_samples):
    """Known-wrong variant: log p(x, z) instead of log p(x, z) - log p(z) (prior counted twice)."""
    z = jax.random.categorical(key, logits, shape=(num_samples,))
    return jax.nn.log_softmax(logits)[z] + diag_normal_log_prob(x, means[z], log_scales[z])


def is_unbiased_for_p(sampler, num_samples=50_000):
    """Is the mean weight within 5 SE of p(x)? (5 SE: ~6e-7 false alarms.)"""
    log_w = sampler(jax.random.key(0), X, *TRUE_MIXTURE, num_samples)
    w = jnp.exp(log_w - mixture_log_prob(X, *TRUE_MIXTURE))     # w / p(x), mean 1 if unbiased
    return abs(float(w.mean()) - 1.0) < 5 * float(w.std()) / np.sqrt(num_samples)


def test_prior_sampling_is_unbiased_and_the_joint_variant_is_caught():
    assert is_unbiased_for_p(mixture_prior_log_weights)
    assert not is_unbiased_for_p(joint_log_weights)  # negative control


def test_prior_log_weights_shape_jit_and_values():
    sampler = jax.jit(mixture_prior_log_weights, static_argnames="num_samples")
    log_w = sampler(jax.random.key(1), X, *TRUE_MIXTURE, num_samples=7)
    assert log_w.shape == (7,) and log_w.dtype == jnp.float32
    # every log-weight is the log-likelihood of one of the components
    per_component = diag_normal_log_prob(X, TRUE_MIXTURE.means, TRUE_MIXTURE.log_scales)
    assert np.all(np.min(np.abs(np.asarray(log_w)[:, None] - np.asarray(per_component)), axis=1) < 1e-4)


def test_prior_log_weights_reject_bad_input():
    with pytest.raises(ValueError, match="num_samples"):
        mixture_prior_log_weights(jax.random.key(0), X, *TRUE_MIXTURE, 0)
    with pytest.raises(ValueError, match="x must be"):
        mixture_prior_log_weights(jax.random.key(0), jnp.ones(3), *TRUE_MIXTURE, 4)
    with pytest.raises(ValueError, match="logits"):
        mixture_prior_log_weights(jax.random.key(0), X, jnp.zeros(2), TRUE_MIXTURE.means,
                                  TRUE_MIXTURE.log_scales, 4)


def unsorted_carrying_fraction(log_weights, mass=0.99):
    """Known-wrong variant: accumulates weights in their given order, not largest first."""
    cumulative = jnp.cumsum(jax.nn.softmax(log_weights, axis=-1), axis=-1)
    return (jnp.sum(cumulative < mass, axis=-1) + 1) / log_weights.shape[-1]


def test_carrying_fraction_extremes():
    assert float(carrying_fraction(jnp.zeros(100))) == pytest.approx(0.99)
    assert float(carrying_fraction(jnp.zeros(100), mass=1.0)) == pytest.approx(1.0)
    one_dominant = jnp.array([-50.0] * 9 + [0.0])
    assert float(carrying_fraction(one_dominant)) == pytest.approx(0.1)
    assert float(unsorted_carrying_fraction(one_dominant)) == pytest.approx(1.0)  # negative control caught


def test_carrying_fraction_is_about_one_over_n_for_separated_clusters():
    # N clusters far apart, x at the first: only draws of z = 0 carry the estimate.
    n, k = 8, 4000
    means = jnp.stack([20.0 * jnp.arange(n), jnp.zeros(n)], axis=-1)
    log_w = mixture_prior_log_weights(jax.random.key(2), means[0], jnp.zeros(n), means,
                                      jnp.zeros((n, 2)), k)
    hits = float(jnp.mean(log_w > -10))
    # the count of hits is Binomial(k, 1/n): 5 SE ~6e-7 false alarms
    assert abs(hits - 1 / n) < 5 * np.sqrt((1 / n) * (1 - 1 / n) / k)
    assert float(carrying_fraction(log_w)) == pytest.approx(0.99 * hits, abs=1.5 / k)


def test_carrying_fraction_batches_jits_and_rejects_bad_mass():
    log_w = jax.random.normal(jax.random.key(3), (4, 30))
    batched = jax.jit(partial(carrying_fraction, mass=0.9))(log_w)
    assert batched.shape == (4,)
    assert np.allclose(batched, [carrying_fraction(row, 0.9) for row in log_w])
    with pytest.raises(ValueError, match="mass"):
        carrying_fraction(log_w, mass=1.5)


def test_summarise_estimates_against_numpy():
    log_p = jnp.asarray(-3.0)
    log_est = log_p + 0.3 * jax.random.normal(jax.random.key(4), (500,))
    summary = jax.jit(summarise_estimates)(log_est, log_p)
    ratio = np.exp(np.asarray(log_est, np.float64) + 3.0)
    assert float(summary.relative_error) == pytest.approx(np.sqrt(np.mean((ratio - 1) ** 2)), rel=1e-4)
    assert float(summary.ratio) == pytest.approx(ratio.mean(), rel=1e-5)
    assert float(summary.ratio_se) == pytest.approx(ratio.std(ddof=1) / np.sqrt(500), rel=1e-4)
    assert float(summary.log_bias) == pytest.approx(np.log(ratio).mean(), abs=1e-5)
    exact = summarise_estimates(jnp.full((10,), -700.0), jnp.asarray(-700.0))  # far below float32's range
    assert float(exact.relative_error) == 0.0 and float(exact.log_bias_se) == 0.0
    with pytest.raises(ValueError, match="log_estimates"):
        summarise_estimates(jnp.zeros((2, 3)), log_p)


def test_prior_draws_follow_pi_and_skip_impossible_components():
    logits = jnp.log(jnp.array([0.0, 0.2, 0.0, 0.5, 0.3, 0.0]))   # zero-probability components included
    means, log_scales = jnp.arange(6.0)[:, None] * 100.0, jnp.zeros((6, 1))
    k = 40_000
    log_w = mixture_prior_log_weights(jax.random.key(5), jnp.zeros(1), logits, means, log_scales, k)
    drawn = np.argmax(np.abs(np.asarray(log_w)[:, None] - np.asarray(
        diag_normal_log_prob(jnp.zeros(1), means, log_scales))[None]) < 1e-3, axis=1)
    counts = np.bincount(drawn, minlength=6) / k
    pi = np.array([0.0, 0.2, 0.0, 0.5, 0.3, 0.0])
    assert np.all(counts[pi == 0] == 0)
    # 5 SE per component: ~6e-7 false alarms each
    assert np.all(np.abs(counts - pi) < 5 * np.sqrt(pi * (1 - pi) / k) + 1e-12)
