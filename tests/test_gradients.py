import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvm_tutorial import gradients as G
from lvm_tutorial.distributions import diag_normal_log_prob

MEAN = jnp.array([0.5, -1.0, 1.5])
LOG_SCALE = jnp.array([0.0, -0.5, 0.3])
A = jnp.array([1.0, 2.0, 0.5])
C = jnp.array([0.3, -1.0, 2.0])


def quadratic(z):
    return jnp.sum(A * z**2 + C * z)


# E f = sum_d a_d (mu_d^2 + sigma_d^2) + c_d mu_d, so
TRUE_D_MEAN = 2 * A * MEAN + C
TRUE_D_LOG_SCALE = 2 * A * jnp.exp(2 * LOG_SCALE)


def assert_unbiased(samples, truth, num_se=5.0):
    n = samples.shape[0]
    se = samples.std(0) / math.sqrt(n)
    assert np.all(np.abs(samples.mean(0) - truth) < num_se * se), (samples.mean(0), truth, se)


def test_reparam_gradient_is_unbiased(key):
    d_mean, d_log_scale = G.reparam_grad_samples(key, quadratic, MEAN, LOG_SCALE, 100_000)
    assert d_mean.shape == d_log_scale.shape == (100_000, 3)
    assert_unbiased(d_mean, TRUE_D_MEAN)            # 5 SE: ~6e-7 false alarms per entry
    assert_unbiased(d_log_scale, TRUE_D_LOG_SCALE)
    # negative control: the log-scale gradient without the chain rule through exp (d/d sigma
    # instead of d/d log sigma, i.e. divided by sigma) is caught where sigma != 1
    wrong = d_log_scale / jnp.exp(LOG_SCALE)[None]
    with pytest.raises(AssertionError):
        assert_unbiased(wrong, TRUE_D_LOG_SCALE)


@pytest.mark.parametrize("baseline", [0.0, 3.0])
def test_score_function_gradient_is_unbiased(key, baseline):
    d_mean, d_log_scale = G.score_function_grad_samples(key, quadratic, MEAN, LOG_SCALE, 400_000,
                                                        baseline)
    assert_unbiased(d_mean, TRUE_D_MEAN)            # 5 SE: ~6e-7 false alarms per entry
    assert_unbiased(d_log_scale, TRUE_D_LOG_SCALE)


def flipped_score_samples(key, f, mean, log_scale, n):
    """Source 002's toy problem: the score written as (mean - z)/sigma^2, the wrong sign."""
    z = mean[None] + jnp.exp(log_scale)[None] * jax.random.normal(key, (n,) + mean.shape)
    return jax.vmap(f)(z)[:, None] * (mean[None] - z) / jnp.exp(2 * log_scale)[None]


def test_a_flipped_score_is_caught(key):
    wrong = flipped_score_samples(key, quadratic, MEAN, LOG_SCALE, 400_000)
    se = wrong.std(0) / math.sqrt(400_000)
    assert np.any(np.abs(wrong.mean(0) - TRUE_D_MEAN) > 5 * se)


def test_score_matches_autodiff_of_the_log_density(key):
    z = jnp.array([0.1, 0.2, -0.3])
    d_mean, d_log_scale = jax.grad(diag_normal_log_prob, argnums=(1, 2))(z, MEAN, LOG_SCALE)
    np.testing.assert_allclose(d_mean, (z - MEAN) / jnp.exp(2 * LOG_SCALE), rtol=1e-5)
    np.testing.assert_allclose(d_log_scale, (z - MEAN) ** 2 / jnp.exp(2 * LOG_SCALE) - 1, rtol=1e-5)


def test_reparameterisation_has_lower_variance_for_a_quadratic(key):
    n = 20_000
    r_mean, _ = G.reparam_grad_samples(key, quadratic, MEAN, LOG_SCALE, n)
    s_mean, _ = G.score_function_grad_samples(key, quadratic, MEAN, LOG_SCALE, n)
    assert np.all(r_mean.var(0) * 5 < s_mean.var(0))  # a factor above 10 here; 5 is a wide margin


def test_leave_one_out_baseline_reduces_variance_without_bias(key):
    n = 200_000
    eps = jax.random.normal(key, (n, 3))
    f_values = jax.vmap(quadratic)(MEAN[None] + jnp.exp(LOG_SCALE)[None] * eps)
    baseline = G.leave_one_out_baseline(f_values)
    np.testing.assert_allclose(baseline[0], (f_values.sum() - f_values[0]) / (n - 1), rtol=1e-4)
    plain, _ = G.score_function_grad_samples(key, quadratic, MEAN, LOG_SCALE, n)
    loo, _ = G.score_function_grad_samples(key, quadratic, MEAN, LOG_SCALE, n, baseline)
    assert_unbiased(loo, TRUE_D_MEAN)
    assert np.all(loo.var(0) < plain.var(0))


def test_bad_inputs(key):
    with pytest.raises(ValueError, match="num_samples"):
        G.reparam_grad_samples(key, quadratic, MEAN, LOG_SCALE, 0)
    with pytest.raises(ValueError, match="num_samples"):
        G.score_function_grad_samples(key, quadratic, MEAN, LOG_SCALE, 0)
    with pytest.raises(ValueError, match="values"):
        G.leave_one_out_baseline(jnp.ones(1))


def test_everything_runs_under_jit_with_the_eager_values(key):
    for fn in (G.reparam_grad_samples, G.score_function_grad_samples):
        jitted = jax.jit(fn, static_argnums=(1, 4))(key, quadratic, MEAN, LOG_SCALE, 8)
        for a, b in zip(jitted, fn(key, quadratic, MEAN, LOG_SCALE, 8)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(G.leave_one_out_baseline)(jnp.arange(4.0)),
                               G.leave_one_out_baseline(jnp.arange(4.0)), rtol=1e-6)
