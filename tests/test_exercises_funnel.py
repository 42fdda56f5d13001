"""Chapter 7 checkers: the reference solutions pass, and each known-wrong variant gets its hint."""
import jax
import jax.numpy as jnp
import pytest
from jax.scipy.stats import norm

from lvm_tutorial.exercises import funnel


def good_log_prob(x):
    return norm.logpdf(x[:, 0], 0.0, jnp.exp(x[:, 1])) + norm.logpdf(x[:, 1], 0.0, 1.35)


def test_reference_solutions_pass():
    assert funnel.check_funnel_log_prob(good_log_prob).passed
    assert funnel.check_funnel_log_prob(jax.jit(good_log_prob)).passed
    assert funnel.check_reverse_kl(lambda lp, lt: jnp.mean(lp - lt)).passed
    feedback = funnel.check_neck_mass(lambda: norm.cdf(-2.0 / 1.35))
    assert feedback.passed and str(feedback).startswith("Correct: ")


@pytest.mark.parametrize("wrong, hint", [
    (lambda x: norm.logpdf(x[:, 0], 0.0, jnp.exp(x[:, 1] / 2)) + norm.logpdf(x[:, 1], 0.0, 1.35),
     "standard deviation (the variance is exp(2 x1))"),
    (lambda x: norm.logpdf(x[:, 0], 0.0, jnp.exp(x[:, 1])) + norm.logpdf(x[:, 1], 0.0, 1.35 ** 0.5),
     "passed sqrt(1.35)"),
    (lambda x: norm.logpdf(x[:, 1], 0.0, jnp.exp(x[:, 0])) + norm.logpdf(x[:, 0], 0.0, 1.35), "swapped"),
    (lambda x: norm.logpdf(x[:, 0], 0.0, jnp.exp(x[:, 1])), "marginal of x1"),
    (lambda x: norm.logpdf(x[:, 0], 0.0, jnp.exp(x[:, 1] / 2)) + norm.logpdf(x[:, 1], 0.0, 3.0), "Neal"),
    (lambda x: x.sum(), "shape"),
])
def test_funnel_mistakes_get_their_hint(wrong, hint):
    feedback = funnel.check_funnel_log_prob(wrong)
    assert not feedback.passed and hint in feedback.message, feedback.message


@pytest.mark.parametrize("wrong, hint", [
    (lambda lp, lt: jnp.mean(lt - lp), "sign is flipped"),
    (lambda lp, lt: jnp.sum(lp - lt), "summed"),
    (lambda lp, lt: jnp.mean(jnp.exp(lp) - jnp.exp(lt)), "stay with log-densities"),
    (lambda lp, lt: jnp.mean(jnp.exp(lp) * (lp - lt)), "do not weight"),
    (lambda lp, lt: 1 / 0, "raised ZeroDivisionError"),
])
def test_reverse_kl_mistakes_get_their_hint(wrong, hint):
    feedback = funnel.check_reverse_kl(wrong)
    assert not feedback.passed and hint in feedback.message, feedback.message


@pytest.mark.parametrize("wrong, hint", [
    (lambda: norm.cdf(-2.0), "standard normal"),
    (lambda: norm.cdf(-2.0 / 1.35 ** 0.5), "not its variance"),
    (lambda: 2 * norm.cdf(-2.0 / 1.35), "both tails"),
    (lambda: 1 - norm.cdf(-2.0 / 1.35), "complement"),
])
def test_neck_mistakes_get_their_hint(wrong, hint):
    feedback = funnel.check_neck_mass(wrong)
    assert not feedback.passed and hint in feedback.message, feedback.message
