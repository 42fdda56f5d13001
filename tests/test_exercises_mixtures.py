"""Chapter 1 checkers: the reference solutions pass, and each known-wrong variant gets its hint."""
import jax
import jax.numpy as jnp
import pytest
from jax.scipy.special import logsumexp

from lvm_tutorial.distributions import diag_normal_log_prob
from lvm_tutorial.exercises import mixtures


def log_joint(x, logits, means, log_scales):
    return jax.nn.log_softmax(logits) + diag_normal_log_prob(x, means, log_scales)


def good_log_prob(x, logits, means, log_scales):
    return logsumexp(log_joint(x, logits, means, log_scales))


def good_posterior(x, logits, means, log_scales):
    return jax.nn.softmax(log_joint(x, logits, means, log_scales))


def test_reference_solutions_pass():
    assert mixtures.check_mixture_log_prob(good_log_prob).passed
    assert mixtures.check_mixture_log_prob(jax.jit(good_log_prob)).passed
    assert mixtures.check_responsibilities(good_posterior).passed
    assert str(mixtures.check_responsibilities(good_posterior)).startswith("Correct: ")


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, l, m, s: jnp.log(jnp.sum(jnp.exp(log_joint(x, l, m, s)))), "underflows"),
    (lambda x, l, m, s: logsumexp(diag_normal_log_prob(x, m, s)), "forgot the mixing weights"),
    (lambda x, l, m, s: logsumexp(l + diag_normal_log_prob(x, m, s)), "raw logits"),
    (lambda x, l, m, s: jnp.sum(jax.nn.softmax(l) * diag_normal_log_prob(x, m, s)), "averaged log-densities"),
    (lambda x, l, m, s: jnp.max(log_joint(x, l, m, s)), "largest component"),
    (lambda x, l, m, s: 1 / 0, "raised ZeroDivisionError"),
])
def test_log_prob_mistakes_get_their_hint(wrong, hint):
    feedback = mixtures.check_mixture_log_prob(wrong)
    assert not feedback.passed
    assert hint in feedback.message
    assert str(feedback).startswith("Not yet: ")


def unnormalised(x, l, m, s):
    return jnp.exp(log_joint(x, l, m, s))


def ratio_without_log_space(x, l, m, s):
    joint = jnp.exp(log_joint(x, l, m, s))
    return joint / jnp.sum(joint)


@pytest.mark.parametrize("wrong, hint", [
    (ratio_without_log_space, "0/0"),
    (unnormalised, "not 1"),
    (lambda x, l, m, s: jax.nn.softmax(diag_normal_log_prob(x, m, s)), "forgot the prior"),
    (lambda x, l, m, s: jax.nn.softmax(l), "returned the prior"),
    (lambda x, l, m, s: good_posterior(x, l, m, s)[:2], "shape"),
])
def test_posterior_mistakes_get_their_hint(wrong, hint):
    feedback = mixtures.check_responsibilities(wrong)
    assert not feedback.passed
    assert hint in feedback.message


def test_cases_exercise_underflow_and_unnormalised_logits():
    cases = mixtures.mixture_cases()
    far = cases[1]
    assert jnp.all(jnp.exp(log_joint(*far)) == 0.0)  # the far point really underflows in float32
    assert abs(float(logsumexp(cases[2][1]))) > 0.1  # the third case's logits are not normalised
