"""Chapter 2 checkers: the reference solutions pass, and each known-wrong variant gets its hint."""
import jax
import jax.numpy as jnp
import pytest
from jax.scipy.special import logsumexp

from lvm_tutorial.exercises import importance_sampling as ex


def good_log_estimate(log_weights):
    return logsumexp(log_weights) - jnp.log(log_weights.shape[-1])


def good_ess(log_weights):
    return 1.0 / jnp.sum(jax.nn.softmax(log_weights) ** 2)


def test_reference_solutions_pass():
    assert ex.check_log_importance_estimate(good_log_estimate).passed
    assert ex.check_log_importance_estimate(jax.jit(good_log_estimate)).passed
    assert ex.check_effective_sample_size(good_ess).passed
    assert ex.check_effective_sample_size(jax.jit(good_ess)).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda lw: jnp.log(jnp.mean(jnp.exp(lw))), "underflow"),
    (lambda lw: jnp.mean(lw), "averaged the log-weights"),
    (lambda lw: logsumexp(lw), "divide by K"),
    (lambda lw: jnp.exp(good_log_estimate(lw)), "asks for its log"),
    (lambda lw: good_log_estimate(lw) + 0.1, "differs from the reference"),
])
def test_estimate_mistakes_get_their_hint(wrong, hint):
    feedback = ex.check_log_importance_estimate(wrong)
    assert not feedback.passed
    assert hint in feedback.message


@pytest.mark.parametrize("wrong, hint", [
    (lambda lw: jnp.sum(jnp.exp(lw)) ** 2 / jnp.sum(jnp.exp(2 * lw)), "underflow"),
    (lambda lw: 1.0 / jnp.sum(jnp.exp(2 * lw)), "forgot to normalise"),
    (lambda lw: jnp.sum(jax.nn.softmax(lw) ** 2), "reciprocal"),
    (lambda lw: jnp.sum(lw) ** 2 / jnp.sum(lw ** 2), "log-weights as if"),
    (lambda lw: good_ess(lw) / lw.shape[-1], "ESS / K"),
    (lambda lw: lw.shape[-1] * good_ess(lw), "between 1 and K"),
])
def test_ess_mistakes_get_their_hint(wrong, hint):
    feedback = ex.check_effective_sample_size(wrong)
    assert not feedback.passed
    assert hint in feedback.message


def test_cases_include_underflow():
    assert any(jnp.all(jnp.exp(lw) == 0.0) for (lw,) in ex.log_weight_cases())
