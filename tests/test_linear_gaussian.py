import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from lvm_tutorial import linear_gaussian as lg

MODEL = lg.make_linear_gaussian(jax.random.key(7), data_dim=3, latent_dim=2)
X = jnp.array([0.5, -1.0, 1.2])


def test_log_marginal_matches_prior_sampling(key):
    n = 400_000
    z = jax.random.normal(key, (n, 2))
    w, c, s = MODEL
    lik = stats.multivariate_normal(np.zeros(3), np.exp(2 * float(s)) * np.eye(3))
    values = np.exp(lik.logpdf(np.asarray(X) - np.asarray(z @ w.T + c[None, :])))
    se = values.std() / math.sqrt(n)
    assert abs(values.mean() - np.exp(lg.log_marginal(MODEL, X))) < 5 * se  # ~6e-7 false alarms


def test_posterior_is_bayes_rule_and_diagonal():
    mean, cov = lg.posterior(MODEL, X)
    np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-5)  # orthogonal columns
    # Bayes: log p(z|x) = log p(x, z) - log p(x) for any z
    for z in (jnp.zeros(2), jnp.array([0.3, -0.4])):
        want = lg.log_joint(MODEL, X, z) - lg.log_marginal(MODEL, X)
        got = stats.multivariate_normal(np.asarray(mean), np.asarray(cov)).logpdf(np.asarray(z))
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_kl_matches_monte_carlo_and_vanishes_at_the_posterior(key):
    mean, cov = lg.posterior(MODEL, X)
    q_mean, q_log_scale = mean + 0.5, jnp.log(jnp.sqrt(jnp.diag(cov))) - 0.3
    kl = lg.kl_diag_to_full(q_mean, q_log_scale, mean, cov)
    z = q_mean[None] + jnp.exp(q_log_scale)[None] * jax.random.normal(key, (200_000, 2))
    log_q = stats.norm.logpdf(np.asarray(z), np.asarray(q_mean), np.exp(np.asarray(q_log_scale))).sum(1)
    log_p = stats.multivariate_normal(np.asarray(mean), np.asarray(cov)).logpdf(np.asarray(z))
    diff = log_q - log_p
    assert abs(diff.mean() - kl) < 5 * diff.std() / math.sqrt(len(diff))  # ~6e-7 false alarms
    post_mean, post_log_scale = lg.posterior_diag(MODEL, X)
    assert abs(float(lg.kl_diag_to_full(post_mean, post_log_scale, mean, cov))) < 1e-5


def test_log_weights_and_sample_shapes_under_jit(key):
    lw = jax.jit(lg.log_weights, static_argnums=5)(key, MODEL, X, jnp.zeros(2), jnp.zeros(2), 7)
    assert lw.shape == (7,)
    x, z = jax.jit(lg.sample, static_argnums=2)(key, MODEL, 5)
    assert x.shape == (5, 3) and z.shape == (5, 2)
    np.testing.assert_allclose(jax.jit(lg.log_marginal)(MODEL, X), lg.log_marginal(MODEL, X), rtol=1e-6)
    for a, b in zip(jax.jit(lg.posterior_diag)(MODEL, X), lg.posterior_diag(MODEL, X)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
