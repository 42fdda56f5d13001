"""Chapter 3's checkers: the reference passes, each known mistake gets its hint."""
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from lvm_tutorial import linear_gaussian as lg
from lvm_tutorial.exercises.elbo import (check_diag_gaussian_kl, check_elbo, reference_diag_gaussian_kl,
                                         reference_elbo)


def test_elbo_checker():
    assert check_elbo(lambda lj, lq: jnp.mean(lj - lq)).passed
    assert str(check_elbo(reference_elbo)).startswith("Correct")
    wrong = {
        "wrong sign": lambda lj, lq: jnp.mean(lq - lj),
        "left out -log q": lambda lj, lq: jnp.mean(lj),
        "minus sign": lambda lj, lq: jnp.mean(lj + lq),
        "summed": lambda lj, lq: jnp.sum(lj - lq),
        "importance-weighted": lambda lj, lq: logsumexp(lj - lq) - jnp.log(lj.shape[0]),
    }
    for hint, fn in wrong.items():
        feedback = check_elbo(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
    assert "NotImplementedError" in check_elbo(_stub).message


def _stub(*args):
    raise NotImplementedError("your code here")


def test_kl_checker():
    def kl(mq, sq, mp, sp):
        return jnp.sum(sp - sq + 0.5 * (jnp.exp(2 * (sq - sp)) + (mq - mp) ** 2 * jnp.exp(-2 * sp)) - 0.5)

    assert check_diag_gaussian_kl(kl).passed
    wrong = {
        "log-variance": lambda mq, sq, mp, sp: kl(mq, sq / 2, mp, sp / 2),
        "KL(p || q)": lambda mq, sq, mp, sp: kl(mp, sp, mq, sq),
        "-1/2": lambda mq, sq, mp, sp: kl(mq, sq, mp, sp) + 0.5 * mq.shape[0],
        "not by the scale": lambda mq, sq, mp, sp: jnp.sum(
            sp - sq + 0.5 * (jnp.exp(2 * (sq - sp)) + (mq - mp) ** 2 * jnp.exp(-sp)) - 0.5),
    }
    for hint, fn in wrong.items():
        feedback = check_diag_gaussian_kl(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)


def test_reference_kl_matches_the_package():
    mq, sq = np.array([0.2, -1.0]), np.array([0.1, -0.4])
    mp, sp = np.array([1.0, 0.5]), np.array([-0.2, 0.3])
    want = lg.kl_diag_to_full(jnp.asarray(mq), jnp.asarray(sq), jnp.asarray(mp), jnp.diag(jnp.exp(2 * jnp.asarray(sp))))
    np.testing.assert_allclose(reference_diag_gaussian_kl(mq, sq, mp, sp), want, rtol=1e-5)
