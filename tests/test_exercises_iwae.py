"""Chapter 5's checkers: the reference passes, each known mistake gets its hint."""
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from lvm_tutorial import linear_gaussian as lg
from lvm_tutorial.distributions import diag_normal_log_prob
from lvm_tutorial.exercises.iwae import check_iwae_bound, check_log_weight


def _stub(*args):
    raise NotImplementedError("your code here")


def test_iwae_bound_checker():
    good = check_iwae_bound(lambda lw: logsumexp(lw, axis=-1) - jnp.log(lw.shape[-1]))
    assert good.passed and str(good).startswith("Correct")
    wrong = {
        "ELBO": lambda lw: jnp.mean(lw, axis=-1),
        "too high by log K": lambda lw: logsumexp(lw, axis=-1),
        "decreases as K grows": lambda lw: logsumexp(lw, axis=-1) - 2 * jnp.log(lw.shape[-1]),
        "largest log-weight": lambda lw: jnp.max(lw, axis=-1),
        "logsumexp": lambda lw: jnp.log(jnp.mean(jnp.exp(lw), axis=-1)),   # naive: overflows
        "shape": lambda lw: logsumexp(lw) - jnp.log(lw.shape[-1]),          # forgot axis=-1
    }
    for hint, fn in wrong.items():
        feedback = check_iwae_bound(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
    stub = check_iwae_bound(_stub)
    assert not stub.passed and "NotImplementedError" in stub.message


def test_log_weight_checker():
    def good(z, x, model, q_mean, q_log_scale):
        return lg.log_joint(model, x, z) - diag_normal_log_prob(z, q_mean, q_log_scale)

    def log_lik(z, x, model):
        return diag_normal_log_prob(x, model.weight @ z + model.bias,
                                    jnp.broadcast_to(model.log_scale, x.shape))

    def log_prior(z):
        return diag_normal_log_prob(z, 0.0, jnp.zeros_like(z))

    assert check_log_weight(good).passed
    wrong = {
        "subtract log q(z)": lambda z, x, m, qm, qs: lg.log_joint(m, x, z),
        "sign of log q(z)": lambda z, x, m, qm, qs: lg.log_joint(m, x, z)
        + diag_normal_log_prob(z, qm, qs),
        "prior log p(z) is missing": lambda z, x, m, qm, qs: log_lik(z, x, m)
        - diag_normal_log_prob(z, qm, qs),
        "does not run under jax.vmap": lambda z, x, m, qm, qs: float(z[0]),
    }
    for hint, fn in wrong.items():
        feedback = check_log_weight(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
    assert log_prior(jnp.zeros(2)).shape == ()
    assert not check_log_weight(_stub).passed
