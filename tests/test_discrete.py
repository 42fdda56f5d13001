"""Tests of lvm_tutorial.discrete: the categorical score function against enumeration."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvm_tutorial.discrete import (categorical_exact_grad, categorical_expectation, categorical_log_prob,
                                   categorical_score, categorical_score_function_grad_samples)
from lvm_tutorial.gradients import leave_one_out_baseline

LOGITS = jnp.array([0.5, -0.3, 1.2, 0.0])
VALUES = jnp.array([1.0, 4.0, -2.0, 0.5])


def f(z):
    return VALUES[z]


def test_score_is_the_gradient_of_the_log_probability():
    for z in range(4):
        auto = jax.grad(categorical_log_prob, argnums=1)(z, LOGITS)
        np.testing.assert_allclose(categorical_score(z, LOGITS), auto, atol=1e-6)
    assert jax.jit(categorical_score)(jnp.array([0, 3]), LOGITS).shape == (2, 4)
    assert jax.jit(categorical_log_prob)(2, LOGITS).shape == ()


def test_exact_gradient_by_enumeration_matches_its_closed_form():
    pi = jax.nn.softmax(LOGITS)
    expected = jnp.sum(pi * VALUES)
    np.testing.assert_allclose(categorical_expectation(f, LOGITS), expected, rtol=1e-6)
    closed = pi * (VALUES - expected)
    np.testing.assert_allclose(jax.jit(categorical_exact_grad, static_argnums=0)(f, LOGITS), closed,
                               atol=1e-6)


def test_score_function_is_unbiased_and_reparameterisation_through_an_integer_is_caught():
    n = 200_000
    key = jax.random.key(0)
    samples = jax.jit(categorical_score_function_grad_samples, static_argnums=(1, 3))(key, f, LOGITS, n)
    exact = categorical_exact_grad(f, LOGITS)
    se = samples.std(0) / jnp.sqrt(n)
    assert jnp.all(jnp.abs(samples.mean(0) - exact) < 5 * se)  # 5 SE: ~6e-7 false alarms per entry
    # Negative control: "reparameterising" by differentiating through the sampled integer gives
    # zero, which the same test rejects.
    naive = jax.grad(lambda logits: f(jax.random.categorical(key, logits)))(LOGITS)
    assert jnp.all(naive == 0.0)
    assert jnp.any(jnp.abs(naive - exact) > 5 * se)


def test_leave_one_out_baseline_keeps_it_unbiased_and_the_plain_mean_is_caught():
    # Batches of 4: with the plain mean as baseline the estimate shrinks by (N - 1) / N = 3/4.
    num_batches, size = 100_000, 4
    keys = jax.random.split(jax.random.key(1), num_batches)

    def one_batch(k, use_loo):
        z = jax.random.categorical(k, LOGITS, shape=(size,))
        values = f(z)
        baseline = jnp.where(use_loo, leave_one_out_baseline(values), jnp.mean(values))
        return categorical_score_function_grad_samples(k, f, LOGITS, size, baseline).mean(0)

    exact = categorical_exact_grad(f, LOGITS)
    for use_loo, should_pass in ((True, True), (False, False)):
        est = jax.jit(jax.vmap(one_batch, (0, None)))(keys, use_loo)
        se = est.std(0) / jnp.sqrt(num_batches)
        ok = bool(jnp.all(jnp.abs(est.mean(0) - exact) < 5 * se))  # 5 SE: ~6e-7 false alarms
        assert ok == should_pass


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="logits"):
        categorical_score(0, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="num_samples"):
        categorical_score_function_grad_samples(jax.random.key(0), f, LOGITS, 0)
