"""Russian roulette on a geometric series: exact tails, unbiased sums, exact moments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvm_tutorial.roulette import (geometric_survival, roulette_moments, roulette_sum,
                                   sample_geometric_num_terms)

RATIO = 0.5            # the series sum_k RATIO**(k-1) = 2
LENGTH = 80            # more terms than the sampler can reach for rho <= 0.8


def _series(length=LENGTH):
    return RATIO ** jnp.arange(length, dtype=jnp.float32)


def test_survival_closed_form():
    k = jnp.arange(0, 6)
    np.testing.assert_allclose(geometric_survival(k, 0.3), [1, 1, 0.3, 0.09, 0.027, 0.0081],
                               rtol=1e-5)


@pytest.mark.parametrize("rho", [0.0, 1.0, -0.2, 1.5])
def test_bad_rho_is_named(rho):
    with pytest.raises(ValueError, match="rho"):
        geometric_survival(jnp.arange(1, 4), rho)
    with pytest.raises(ValueError, match="rho"):
        sample_geometric_num_terms(jax.random.key(0), (3,), rho)


def test_sampler_matches_its_tail(key):
    n, rho = 200_000, 0.6
    draws = np.asarray(sample_geometric_num_terms(key, (n,), rho))
    assert draws.min() >= 1
    for k in range(1, 8):
        p = rho ** (k - 1)
        se = np.sqrt(p * (1 - p) / n) + 1e-12
        assert abs(np.mean(draws >= k) - p) < 5 * se  # 5 SE: ~6e-7 false alarms per k
    # negative control: the inverse CDF without its "+1" starts at K = 0, and is caught
    shifted = draws - 1
    p = rho
    assert abs(np.mean(shifted >= 2) - p) > 5 * np.sqrt(p * (1 - p) / n)


def test_roulette_sum_is_unbiased(key):
    n = 200_000
    rho = 0.5
    k_key, _ = jax.random.split(key)
    num_terms = sample_geometric_num_terms(k_key, (n,), rho)
    survival = geometric_survival(jnp.arange(1, LENGTH + 1), rho)
    estimates = np.asarray(roulette_sum(jnp.broadcast_to(_series(), (n, LENGTH)), num_terms,
                                        survival))
    se = estimates.std() / np.sqrt(n)
    assert abs(estimates.mean() - 2.0) < 5 * se  # 5 SE: ~6e-7 false alarms
    # negative control: the unweighted partial sum is biased low, and is caught
    plain = np.asarray(roulette_sum(jnp.broadcast_to(_series(), (n, LENGTH)), num_terms,
                                    jnp.ones(LENGTH)))
    assert abs(plain.mean() - 2.0) > 5 * plain.std() / np.sqrt(n)
    # the sample variance agrees with the exact one (2 for RATIO = rho = 0.5), within 5%
    exact = roulette_moments(RATIO ** np.arange(LENGTH), rho ** np.arange(LENGTH))
    assert abs(estimates.var() / exact.variance - 1) < 0.05


def test_roulette_sum_masks_past_num_terms():
    terms = jnp.array([1.0, 2.0, 4.0, jnp.nan])        # a NaN past K must not leak
    survival = jnp.array([1.0, 0.5, 0.25, 0.125])
    np.testing.assert_allclose(roulette_sum(terms, jnp.array([1, 2, 3]), survival), [1, 5, 21])
    with pytest.raises(ValueError, match="num_terms"):
        roulette_sum(terms, 5, survival)
    with pytest.raises(ValueError, match="survival"):
        roulette_sum(terms, 2, survival[:3])


def test_moments_closed_form():
    # geometric series with a geometric tail: E[K] = 1 / (1 - rho); variance finite iff RATIO**2 < rho
    k = np.arange(400)
    for rho, variance in [(0.5, 2.0), (0.8, 4.0 / 11.0), (0.3, 14.0)]:
        moments = roulette_moments(RATIO ** k, rho ** k)
        np.testing.assert_allclose(moments.mean, 2.0, rtol=1e-10)
        np.testing.assert_allclose(moments.expected_cost, 1 / (1 - rho), rtol=1e-10)
        np.testing.assert_allclose(moments.variance, variance, rtol=1e-8)
    # rho < RATIO**2: the variance grows without bound as terms are added
    grows = [roulette_moments(RATIO ** k[:n], 0.2 ** k[:n]).variance for n in (20, 40, 80)]
    assert grows[1] > 50 * grows[0] and grows[2] > 50 * grows[1]
    with pytest.raises(ValueError, match="survival"):
        roulette_moments(np.ones(3), np.ones(4))


def test_kernels_run_under_jit(key):
    # roulette_moments is a float64 numpy oracle and is not meant to be traced
    rho = jnp.float32(0.7)                          # a traced rho: one program for every tail
    draws = jax.jit(lambda k, r: sample_geometric_num_terms(k, (5,), r))(key, rho)
    assert draws.shape == (5,) and draws.dtype == jnp.int32
    survival = jax.jit(geometric_survival)(jnp.arange(1, 4), rho)
    np.testing.assert_allclose(survival, [1.0, 0.7, 0.49], rtol=1e-5)
    value = jax.jit(roulette_sum)(_series(4), jnp.int32(2), jnp.array([1.0, 0.7, 0.49, 0.343]))
    np.testing.assert_allclose(value, 1.0 + 0.5 / 0.7, rtol=1e-5)
