"""Chapter 4's checkers: the reference passes, each known mistake gets its hint."""
import jax
import jax.numpy as jnp
import numpy as np

from lvm_tutorial.distributions import diag_normal_log_prob
from lvm_tutorial.exercises.gradients import (check_gaussian_score, check_leave_one_out,
                                              reference_gaussian_score)
from lvm_tutorial.gradients import leave_one_out_baseline


def test_reference_score_is_jax_grad_of_the_log_density():
    z, mean, log_scale = jnp.array([0.3, -1.2]), jnp.array([1.0, 0.2]), jnp.array([0.4, -0.3])
    auto = jax.grad(diag_normal_log_prob, argnums=(1, 2))(z, mean, log_scale)
    np.testing.assert_allclose(reference_gaussian_score(z, mean, log_scale), np.stack(auto), rtol=1e-5)


def test_score_checker():
    def score(z, mean, log_scale):
        u = (z - mean) * jnp.exp(-log_scale)
        return u * jnp.exp(-log_scale), u**2 - 1.0

    assert check_gaussian_score(score).passed
    assert check_gaussian_score(jax.grad(diag_normal_log_prob, argnums=(1, 2))).passed
    wrong = {
        "wrong sign": lambda z, m, s: (-score(z, m, s)[0], score(z, m, s)[1]),
        "not by the scale": lambda z, m, s: ((z - m) * jnp.exp(-s), score(z, m, s)[1]),
        "-1 from the normaliser": lambda z, m, s: (score(z, m, s)[0], score(z, m, s)[1] + 1.0),
        "with respect to s;": lambda z, m, s: (score(z, m, s)[0], score(z, m, s)[1] * jnp.exp(-s)),
    }
    for hint, fn in wrong.items():
        feedback = check_gaussian_score(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)


def test_leave_one_out_checker():
    assert check_leave_one_out(leave_one_out_baseline).passed
    wrong = {
        "includes the sample itself": lambda v: jnp.full(v.shape, jnp.mean(v)),
        "not K": lambda v: (jnp.sum(v) - v) / v.shape[0],
        "sum of the others": lambda v: jnp.sum(v) - v,
        "must not be f(z_k)": lambda v: v,
    }
    for hint, fn in wrong.items():
        feedback = check_leave_one_out(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
