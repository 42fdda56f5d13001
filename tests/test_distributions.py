import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp as np_logsumexp

from lvm_tutorial import distributions as D

MEAN = jnp.array([0.5, -1.0, 2.0])
LOG_SCALE = jnp.array([0.0, -0.7, 0.4])


def test_diag_normal_log_prob_matches_scipy():
    x = np.random.default_rng(0).normal(size=(5, 3))
    got = D.diag_normal_log_prob(x, MEAN, LOG_SCALE)
    want = stats.norm.logpdf(x, MEAN, np.exp(LOG_SCALE)).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.shape == (5,)


def test_diag_normal_log_prob_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mean"):
        D.diag_normal_log_prob(jnp.zeros(3), jnp.zeros(4), jnp.zeros(3))


def test_diag_normal_sample_moments(key):
    n = 200_000
    z = D.diag_normal_sample(key, MEAN, LOG_SCALE, n)
    assert z.shape == (n, 3)
    scale = np.exp(LOG_SCALE)
    se_mean = scale / np.sqrt(n)
    assert np.all(np.abs(z.mean(0) - MEAN) < 5 * se_mean)  # 5 SE: ~6e-7 false alarms per entry
    se_std = scale / np.sqrt(2 * n)
    assert np.all(np.abs(z.std(0) - scale) < 5 * se_std)   # 5 SE, normal approximation


def test_diag_normal_sample_shapes_and_bad_count(key):
    assert D.diag_normal_sample(key, MEAN, LOG_SCALE).shape == (3,)
    with pytest.raises(ValueError, match="num_samples"):
        D.diag_normal_sample(key, MEAN, LOG_SCALE, 0)


def test_diag_normal_entropy_matches_scipy():
    want = stats.multivariate_normal(np.zeros(3), np.diag(np.exp(2 * LOG_SCALE))).entropy()
    np.testing.assert_allclose(D.diag_normal_entropy(LOG_SCALE), want, rtol=1e-6)


LOGITS = jnp.array([0.3, -0.2, 1.0])
MEANS = jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
LOG_SCALES = jnp.log(jnp.array([[0.6, 0.4], [0.5, 0.8], [0.7, 0.3]]))


def scipy_mixture_log_prob(x):
    log_pi = np.asarray(jax.nn.log_softmax(LOGITS))
    comps = [stats.multivariate_normal(m, np.diag(np.exp(2 * s))).logpdf(x)
             for m, s in zip(np.asarray(MEANS), np.asarray(LOG_SCALES))]
    return np_logsumexp(log_pi[:, None] + np.stack(comps), axis=0)


def test_mixture_log_prob_matches_scipy():
    x = np.random.default_rng(1).normal(size=(7, 2)) * 2
    got = jax.vmap(D.mixture_log_prob, (0, None, None, None))(x, LOGITS, MEANS, LOG_SCALES)
    np.testing.assert_allclose(got, scipy_mixture_log_prob(x), rtol=1e-5)


def test_mixture_posterior_is_bayes_rule():
    x = jnp.array([0.4, 1.1])
    post = D.mixture_posterior(x, LOGITS, MEANS, LOG_SCALES)
    log_pi = np.asarray(jax.nn.log_softmax(LOGITS))
    joint = log_pi + np.array([stats.multivariate_normal(m, np.diag(np.exp(2 * s))).logpdf(x)
                               for m, s in zip(np.asarray(MEANS), np.asarray(LOG_SCALES))])
    np.testing.assert_allclose(post, np.exp(joint - np_logsumexp(joint)), rtol=1e-5)


def test_mixture_sample_frequencies(key):
    n = 100_000
    x, z = D.mixture_sample(key, LOGITS, MEANS, LOG_SCALES, n)
    assert x.shape == (n, 2) and z.shape == (n,)
    pi = np.asarray(jax.nn.softmax(LOGITS))
    freq = np.bincount(np.asarray(z), minlength=3) / n
    assert np.all(np.abs(freq - pi) < 5 * np.sqrt(pi * (1 - pi) / n))  # 5 SE: ~6e-7 per entry
    first = np.asarray(x)[np.asarray(z) == 0]
    assert np.all(np.abs(first.mean(0) - MEANS[0]) < 5 * np.exp(LOG_SCALES[0]) / np.sqrt(len(first)))


def test_mixture_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        D.mixture_log_prob(jnp.zeros(2), jnp.zeros(2), MEANS, LOG_SCALES)
    with pytest.raises(ValueError, match="x has event size"):
        D.mixture_log_prob(jnp.zeros(3), LOGITS, MEANS, LOG_SCALES)


def test_everything_runs_under_jit_with_the_eager_values(key):
    x = jnp.array([0.1, 0.2, 0.3])
    calls = [
        (D.diag_normal_log_prob, (x, MEAN, LOG_SCALE), ()),
        (D.diag_normal_sample, (key, MEAN, LOG_SCALE, 4), (3,)),
        (D.diag_normal_entropy, (LOG_SCALE,), ()),
        (D.mixture_log_prob, (x[:2], LOGITS, MEANS, LOG_SCALES), ()),
        (D.mixture_posterior, (x[:2], LOGITS, MEANS, LOG_SCALES), ()),
        (D.mixture_sample, (key, LOGITS, MEANS, LOG_SCALES, 4), (4,)),
    ]
    for fn, args, static in calls:
        jitted = jax.jit(fn, static_argnums=static)(*args)
        for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(fn(*args))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=fn.__name__)


def test_float64(key):
    with jax.enable_x64(True):
        x = jnp.zeros(3, jnp.float64)
        assert D.diag_normal_log_prob(x, MEAN.astype(jnp.float64), LOG_SCALE.astype(jnp.float64)).dtype == jnp.float64
        assert D.diag_normal_sample(key, jnp.zeros(3, jnp.float64), jnp.zeros(3, jnp.float64)).dtype == jnp.float64
