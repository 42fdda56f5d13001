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


# Exercise 3 (a derivation): log E_q[(w/p)^n] under a shifted proposal.

def good_log_shifted_moment(delta, order):
    return order * (order - 1) / 2 * jnp.sum(jnp.asarray(delta) ** 2)


def test_shifted_moment_reference_matches_the_gaussian_integral_and_sampling():
    import numpy as np
    from scipy import integrate, stats
    # the chapter's general formula is a product of 1-d integrals of p^n / q^(n-1): check one
    # coordinate by quadrature, then the sum over coordinates
    for shift, order in [(0.8, 2), (-1.3, 3), (0.4, 4)]:
        value, _ = integrate.quad(
            lambda u: np.exp(order * stats.norm.logpdf(u)
                             - (order - 1) * stats.norm.logpdf(u, shift)),
            -30, 30, points=[-(order - 1) * shift])
        np.testing.assert_allclose(np.log(value),
                                   ex.reference_log_shifted_moment([shift], order), rtol=1e-7)
    # sampling: delta = (0.3, -0.2), n = 2; w/p = exp(-delta . u - |delta|^2 / 2), u ~ N(0, I).
    # The fourth moment is finite (e^(6 |delta|^2)), so the sample mean has an honest SE; 5 SE:
    # about 6e-7 false alarms
    delta = np.array([0.3, -0.2])
    u = np.random.default_rng(1).standard_normal((1_000_000, 2))
    ratio_sq = np.exp(2 * (-u @ delta - delta @ delta / 2))
    se = ratio_sq.std() / np.sqrt(ratio_sq.size)
    want = np.exp(ex.reference_log_shifted_moment(delta, 2))
    assert abs(ratio_sq.mean() - want) < 5 * se
    # negative control: without the 1/2 the same sample rejects it
    assert abs(ratio_sq.mean() - np.exp(2 * ex.reference_log_shifted_moment(delta, 2))) > 5 * se


def test_shifted_moment_reference_passes():
    assert ex.check_log_shifted_moment(good_log_shifted_moment).passed
    assert ex.check_log_shifted_moment(jax.jit(good_log_shifted_moment, static_argnums=1)).passed
    assert ex.check_log_shifted_moment(ex.reference_log_shifted_moment).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda d, n: jnp.exp(good_log_shifted_moment(d, n)), "its logarithm"),
    (lambda d, n: 2 * good_log_shifted_moment(d, n), "factor 1/2"),
    (lambda d, n: n * n / 2 * jnp.sum(jnp.asarray(d) ** 2), "not nu^2 / 2"),
    (lambda d, n: (n - 1) / 2 * jnp.sum(jnp.asarray(d) ** 2), "factor nu is missing"),
    (lambda d, n: n * (n + 1) / 2 * jnp.sum(jnp.asarray(d) ** 2), "not nu (nu + 1) / 2"),
    (lambda d, n: n * (n - 1) / 2 * jnp.sum(jnp.abs(jnp.asarray(d))), "enters squared"),
    (lambda d, n: n * (n - 1) / 2 * jnp.sum(jnp.asarray(d)) ** 2, "the logs add"),
    (lambda d, n: good_log_shifted_moment(d, n) + 0.01, "differs from the reference"),
])
def test_shifted_moment_mistakes_get_their_hint(wrong, hint):
    feedback = ex.check_log_shifted_moment(wrong)
    assert not feedback.passed
    assert hint in feedback.message, feedback.message
