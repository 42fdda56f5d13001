import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lvm_tutorial import iwae_gradients as IG
from lvm_tutorial import linear_gaussian as lg
from lvm_tutorial.distributions import diag_normal_log_prob
from lvm_tutorial.estimators import iwae_bound

MODEL = lg.make_linear_gaussian(jax.random.key(1), data_dim=5, latent_dim=2)
X = lg.sample(jax.random.key(2), MODEL, 1)[0][0]
LOG_JOINT = functools.partial(lg.log_joint, MODEL, X)
POST_MEAN, POST_LOG_SCALE = lg.posterior_diag(MODEL, X)      # the exact posterior (W^T W diagonal)
# A proposal away from the posterior: shifted by half a posterior sd and 35% too wide.
MEAN, LOG_SCALE = POST_MEAN + 0.5 * jnp.exp(POST_LOG_SCALE), POST_LOG_SCALE + 0.3

NUM_DRAWS = 20_000     # one draw count throughout, so that each (estimator, K) compiles once
ESTIMATORS = {"iwae": IG.iwae_grad, "stl": IG.stl_grad, "dreg": IG.dreg_grad,
              "weighted": IG.weighted_average_iwae_grad}


@functools.cache
def _jitted(name):
    return jax.jit(ESTIMATORS[name], static_argnums=(1, 4, 5))


def draws(name, key, num_samples, num_draws, mean=MEAN, log_scale=LOG_SCALE):
    return _jitted(name)(key, LOG_JOINT, mean, log_scale, num_samples, num_draws)


def z_scores(samples, truth):
    """(mean - truth) / SE per entry, for a (N, d) array of draws."""
    return (samples.mean(0) - truth) / (samples.std(0) / math.sqrt(samples.shape[0]))


# Known-wrong variants, kept here as negative controls.

def dreg_with_linear_weights(key, log_joint_fn, mean, log_scale, num_samples, num_draws):
    """DReG's surrogate with w~ instead of w~^2: biased for K > 1 (it is STL in another form)."""
    eps = jax.random.normal(key, (num_draws, num_samples) + mean.shape)

    def one(e):
        def surrogate(m, s):
            z = m[None] + jnp.exp(s)[None] * e
            log_w = log_joint_fn(z) - diag_normal_log_prob(z, *jax.lax.stop_gradient((m, s)))
            return jnp.sum(jax.lax.stop_gradient(jax.nn.softmax(log_w)) * log_w)
        return jax.grad(surrogate, argnums=(0, 1))(mean, log_scale)
    return jax.vmap(one)(eps)


def path_of_log_joint_only(key, log_joint_fn, mean, log_scale, num_draws):
    """An 'ELBO gradient' that forgets log q altogether: off by -1 per log-scale entry."""
    eps = jax.random.normal(key, (num_draws, 1) + mean.shape)
    grad = jax.grad(lambda m, s, e: log_joint_fn(m[None] + jnp.exp(s)[None] * e)[0], argnums=(0, 1))
    return jax.vmap(grad, in_axes=(None, None, 0))(mean, log_scale, eps)


# --- the weighted-average form ---------------------------------------------------------------

def test_weighted_average_equals_autodiff_of_iwae_bound(key):
    num_samples, num_draws = 4, NUM_DRAWS
    eps = jax.random.normal(key, (num_draws, num_samples, 2))    # the module's convention

    def bound(m, s, e):
        z = m[None] + jnp.exp(s)[None] * e
        return iwae_bound(LOG_JOINT(z) - diag_normal_log_prob(z, m, s))

    autodiff = jax.vmap(jax.grad(bound, argnums=(0, 1)), in_axes=(None, None, 0))(MEAN, LOG_SCALE, eps)
    weighted = draws("weighted", key, num_samples, num_draws)
    standard = draws("iwae", key, num_samples, num_draws)
    for ours, theirs, plain in zip(weighted, autodiff, standard):
        assert ours.shape == (num_draws, 2)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)   # float32 rounding
        np.testing.assert_allclose(plain, theirs, rtol=1e-4, atol=1e-5)
        assert np.max(np.abs(theirs)) > 1e-2                            # not a vacuous zero


# --- unbiasedness ----------------------------------------------------------------------------

def test_every_estimator_at_one_sample_is_unbiased_for_the_elbo_gradient(key):
    # ELBO = log p(x) - KL(q || p(z|x)) in closed form on the linear-Gaussian model.
    post_mean, post_cov = lg.posterior(MODEL, X)
    truth = jax.grad(lambda m, s: -lg.kl_diag_to_full(m, s, post_mean, post_cov),
                     argnums=(0, 1))(MEAN, LOG_SCALE)
    n = NUM_DRAWS
    for name in ("iwae", "stl", "dreg"):
        for samples, exact in zip(draws(name, key, 1, n), truth):
            assert np.all(np.abs(z_scores(samples, exact)) < 5), name   # 5 SE: ~6e-7 per entry
    # Negative control: dropping log q (its path part too) leaves a bias of -1 in d log sigma.
    _, wrong = path_of_log_joint_only(key, LOG_JOINT, MEAN, LOG_SCALE, n)
    assert np.all(np.abs(z_scores(wrong, truth[1])) > 5)


@pytest.mark.parametrize("num_samples", [1, 4, 16])
def test_dreg_and_standard_iwae_have_the_same_mean(key, num_samples):
    # Paired on one key: the difference of the two unbiased estimators must average to zero.
    n = NUM_DRAWS
    standard = draws("iwae", key, num_samples, n)
    dreg = draws("dreg", key, num_samples, n)
    stl = draws("stl", key, num_samples, n)
    wrong = jax.jit(dreg_with_linear_weights, static_argnums=(1, 4, 5))(
        key, LOG_JOINT, MEAN, LOG_SCALE, num_samples, n)
    for s, d, t, w in zip(standard, dreg, stl, wrong):
        assert np.all(np.abs(z_scores(d - s, 0.0)) < 5)     # 5 SE: ~6e-7 false alarms per entry
        np.testing.assert_allclose(w, t, rtol=1e-4, atol=1e-5)   # the w~ variant is STL
        if num_samples > 1:
            # Negative controls: STL (= DReG with w~) is biased for the IWAE gradient.
            assert np.all(np.abs(z_scores(t - s, 0.0)) > 5)


# --- the exact posterior ---------------------------------------------------------------------

@pytest.mark.parametrize("num_samples", [1, 4])
def test_at_the_exact_posterior_only_the_standard_estimator_has_variance(key, num_samples):
    n = NUM_DRAWS
    scale = jnp.exp(POST_LOG_SCALE)
    for name in ("stl", "dreg"):
        for samples in draws(name, key, num_samples, n, POST_MEAN, POST_LOG_SCALE):
            assert np.max(np.abs(samples)) < 1e-4       # zero to float32 rounding (entries ~ 1)
    d_mean, d_log_scale = draws("iwae", key, num_samples, n, POST_MEAN, POST_LOG_SCALE)
    # Only the score part is left: -(1/K) sum_k eps_k / sigma and -(1/K) sum_k (eps_k^2 - 1),
    # of variance 1 / (K sigma^2) and 2 / K.
    for samples, exact in ((d_mean, 1 / (num_samples * scale**2)),
                           (d_log_scale, jnp.full(2, 2.0 / num_samples))):
        squares = (samples - samples.mean(0, keepdims=True)) ** 2
        se = squares.std(0) / math.sqrt(n)
        assert np.all(np.abs(squares.mean(0) - exact) < 5 * se)     # 5 SE: ~6e-7 per entry
        assert np.all(np.abs(squares.mean(0) - 1.25 * exact) > 5 * se)  # power: 25% off is caught


# --- the model's (decoder's) gradient ---------------------------------------------------------

def model_log_joint(model, z):
    return lg.log_joint(model, X, z)


@functools.cache
def _jitted_model():
    return jax.jit(IG.iwae_model_grad, static_argnums=(1, 5, 6))


def model_draws(key, num_samples, mean=MEAN, log_scale=LOG_SCALE, num_draws=NUM_DRAWS):
    """(N, P): the model gradient, its pytree flattened per draw."""
    grads = _jitted_model()(key, model_log_joint, MODEL, mean, log_scale, num_samples, num_draws)
    return jax.vmap(lambda g: ravel_pytree(g)[0])(grads)


def plug_in_at(point):
    """Known-wrong: grad_theta log p(x, z) at one point, ignoring q's spread (biased for W, sigma)."""
    return ravel_pytree(jax.grad(model_log_joint)(MODEL, point))[0]


def uniform_weight_model_grad(key, num_samples, num_draws=NUM_DRAWS):
    """Known-wrong for K > 1: (1/K) sum_k grad log p(x, z_k), the ELBO's gradient averaged."""
    eps = jax.random.normal(key, (num_draws, num_samples, 2))
    z = MEAN[None, None] + jnp.exp(LOG_SCALE)[None, None] * eps

    def one(z_k):
        grads = jax.grad(lambda m: jnp.mean(model_log_joint(m, z_k)))(MODEL)
        return ravel_pytree(grads)[0]
    return jax.vmap(one)(z)


def test_model_gradient_at_one_sample_is_the_elbo_gradient(key):
    # ELBO(theta) = log p_theta(x) - KL(q || p_theta(z|x)) in closed form; q does not move.
    def elbo(model):
        return lg.log_marginal(model, X) - lg.kl_diag_to_full(MEAN, LOG_SCALE, *lg.posterior(model, X))
    truth = ravel_pytree(jax.grad(elbo)(MODEL))[0]
    samples = model_draws(key, 1)
    assert samples.shape == (NUM_DRAWS, truth.size) and np.max(np.abs(truth)) > 0.1
    assert np.all(np.abs(z_scores(samples, truth)) < 5)        # 5 SE: ~6e-7 per entry
    # Negative control: the plug-in gradient at q's mean misses the spread terms of W and sigma.
    assert np.max(np.abs(z_scores(samples, plug_in_at(MEAN)))) > 5


@pytest.mark.parametrize("num_samples", [1, 4])
def test_model_gradient_at_the_exact_posterior_is_the_gradient_of_log_p(key, num_samples):
    # With q = p(z|x) every weight is p(x), so the estimator averages grad log p(x, z_k) over
    # posterior samples: Fisher's identity gives grad log p_theta(x), for every K.
    truth = ravel_pytree(jax.grad(lg.log_marginal)(MODEL, X))[0]
    samples = model_draws(key, num_samples, POST_MEAN, POST_LOG_SCALE)
    assert np.all(np.abs(z_scores(samples, truth)) < 5)        # 5 SE: ~6e-7 per entry
    assert np.max(np.abs(z_scores(samples, plug_in_at(POST_MEAN)))) > 5    # control, as above


def test_model_gradient_is_unbiased_for_the_expected_bound(key):
    # Oracle with K = 16 and q away from the posterior: central differences of IWAE_K along each
    # parameter at fixed noise (common random numbers), from a key of their own.
    num_samples, step = 16, 1e-2
    fd_key, grad_key = jax.random.split(key)
    flat, unravel = ravel_pytree(MODEL)
    eps = jax.random.normal(fd_key, (NUM_DRAWS, num_samples, 2))
    z = MEAN[None, None] + jnp.exp(LOG_SCALE)[None, None] * eps
    log_q = diag_normal_log_prob(z, MEAN, LOG_SCALE)

    def bounds(theta):
        return iwae_bound(model_log_joint(unravel(theta), z) - log_q)         # (N,)
    fd = jnp.stack([(bounds(flat + step * e) - bounds(flat - step * e)) / (2 * step)
                    for e in jnp.eye(flat.size)], axis=1)                       # (N, P)

    def z_against_fd(samples):
        se = jnp.sqrt(samples.var(0) / NUM_DRAWS + fd.var(0) / NUM_DRAWS)
        return (samples.mean(0) - fd.mean(0)) / se
    assert np.all(np.abs(z_against_fd(model_draws(grad_key, num_samples))) < 5)  # ~6e-7 per entry
    # Negative control: uniform weights 1/K instead of w~_k estimate the ELBO's gradient.
    assert np.max(np.abs(z_against_fd(uniform_weight_model_grad(grad_key, num_samples)))) > 5


def test_model_gradient_is_the_weighted_average_of_per_sample_gradients(key):
    # sum_k w~_k grad_theta log p(x, z_k) on the module's noise, against the estimator.
    num_samples, num_draws = 4, 50
    eps = jax.random.normal(key, (num_draws, num_samples, 2))

    def weighted(e):
        z = MEAN[None] + jnp.exp(LOG_SCALE)[None] * e
        log_w = model_log_joint(MODEL, z) - diag_normal_log_prob(z, MEAN, LOG_SCALE)
        per_sample = jax.jacrev(lambda m: model_log_joint(m, z))(MODEL)   # leaves (K, ...)
        flat = jax.vmap(lambda k: ravel_pytree(jax.tree.map(lambda g: g[k], per_sample))[0])(
            jnp.arange(num_samples))
        return jax.nn.softmax(log_w) @ flat
    expected = jax.vmap(weighted)(eps)
    got = model_draws(key, num_samples, num_draws=num_draws)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(expected)) > 0.1
    # Control: the same per-sample gradients averaged with uniform weights differ.
    assert not np.allclose(uniform_weight_model_grad(key, num_samples, num_draws), expected,
                           rtol=1e-2, atol=1e-2)


# --- signal-to-noise ratio -------------------------------------------------------------------

def test_gradient_snr_and_its_standard_error(key):
    normal_key, exp_key = jax.random.split(key)
    g = 0.7 + jax.random.normal(normal_key, (200_000, 3))
    np.testing.assert_allclose(IG.gradient_snr(g), 0.7, atol=5 * math.sqrt(1.245 / 200_000))
    np.testing.assert_allclose(IG.gradient_snr_se(g), math.sqrt((1 + 0.49 / 2) / 200_000), rtol=0.02)
    # A skewed case against replication: exponential(1) draws have SNR 1 and SE 1/sqrt(n),
    # where the Gaussian formula sqrt(1.5/n) would be 22% too large.
    reps, n = 2_000, 500
    e = jax.random.exponential(exp_key, (n, reps))
    spread = np.std(IG.gradient_snr(e), ddof=1)
    rel_se = 1 / math.sqrt(2 * (reps - 1))                             # of a sample sd
    predicted = float(np.mean(IG.gradient_snr_se(e)))
    assert abs(spread / predicted - 1) < 5 * rel_se                      # 5 SE: ~6e-7
    assert abs(spread / math.sqrt(1.5 / n) - 1) > 5 * rel_se             # control: Gaussian formula


def test_dreg_snr_grows_with_k_while_the_standard_one_falls(key):
    ks, n = (1, 4, 16, 64), NUM_DRAWS
    slopes = {}
    for name in ("iwae", "dreg"):
        curve = IG.snr_against_num_samples(key, _jitted(name), LOG_JOINT, MEAN, LOG_SCALE, ks, n)
        assert curve.snr[0].shape == curve.se[1].shape == (4, 2)
        slopes[name] = [IG.log_log_slope(curve.num_samples, snr, se)
                        for snr, se in zip(curve.snr, curve.se)]
    # Rainforth et al. (2018): the standard SNR falls like K^(-1/2); DReG's rises (Tucker et al.).
    # Each slope is within 5 SE (~6e-7 false alarms per entry) of the side it must be on.
    for slope, se in slopes["iwae"]:
        assert np.all(slope + 5 * se < -0.25)
        assert not np.all(slope - 5 * se > 0.25)        # control: the DReG claim fails here
    for slope, se in slopes["dreg"]:
        assert np.all(slope - 5 * se > 0.25)


def test_model_gradient_snr_grows_with_k(key):
    # Rainforth et al. (2018): the model's SNR grows like K^(1/2) (slopes 0.2 to 0.6 here).
    ks = (1, 4, 16, 64)
    keys = jax.random.split(key, len(ks))
    samples = [model_draws(k_key, k) for k_key, k in zip(keys, ks)]
    snr = jnp.stack([IG.gradient_snr(g) for g in samples])
    se = jnp.stack([IG.gradient_snr_se(g) for g in samples])
    slope, slope_se = IG.log_log_slope(np.asarray(ks), snr, se)
    assert np.all(slope - 5 * slope_se > 0.1)                    # 5 SE: ~3e-7 per entry
    assert np.median(slope) > 0.4
    # Control: the standard proposal gradient, on the same K and draws, fails the same claim.
    proposal = IG.snr_against_num_samples(key, _jitted("iwae"), LOG_JOINT, MEAN, LOG_SCALE, ks,
                                          NUM_DRAWS)
    wrong, wrong_se = IG.log_log_slope(proposal.num_samples, proposal.snr[0], proposal.se[0])
    assert not np.all(wrong - 5 * wrong_se > 0.1)


def test_log_log_slope_recovers_a_power_law():
    ks = np.array([1, 4, 16, 64])
    snr = 3.0 * ks[:, None] ** np.array([-0.5, 0.5])
    slope, se = IG.log_log_slope(ks, jnp.asarray(snr), jnp.asarray(0.01 * snr))
    np.testing.assert_allclose(slope, [-0.5, 0.5], rtol=1e-5)
    np.testing.assert_allclose(se, 0.01 / np.sqrt(np.sum((np.log(ks) - np.log(ks).mean()) ** 2)),
                               rtol=1e-5)


# --- plumbing --------------------------------------------------------------------------------

def test_model_gradient_jit_matches_eager(key):
    eager = IG.iwae_model_grad(key, model_log_joint, MODEL, MEAN, LOG_SCALE, 4, 200)
    jitted = _jitted_model()(key, model_log_joint, MODEL, MEAN, LOG_SCALE, 4, 200)
    assert jax.tree.structure(eager) == jax.tree.structure(MODEL)
    for e, j, p in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), jax.tree.leaves(MODEL)):
        assert e.shape == (200,) + p.shape
        np.testing.assert_allclose(j, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_jit_matches_eager(key, name):
    eager = ESTIMATORS[name](key, LOG_JOINT, MEAN, LOG_SCALE, 4, NUM_DRAWS)
    jitted = draws(name, key, 4, NUM_DRAWS)
    for e, j in zip(eager, jitted):
        assert e.shape == (NUM_DRAWS, 2)
        # Path and score parts of order one cancel to ~0.02, so compare at float32 rounding of 1.
        np.testing.assert_allclose(j, e, rtol=1e-4, atol=1e-5)
    g = jax.random.normal(key, (50, 3)) + 1.0
    np.testing.assert_allclose(jax.jit(IG.gradient_snr)(g), IG.gradient_snr(g), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(IG.gradient_snr_se)(g), IG.gradient_snr_se(g), rtol=1e-5)


def test_snr_curve_and_slope_run_under_jit(key):
    args = (key, _jitted("dreg"), LOG_JOINT, MEAN, LOG_SCALE, (1, 4), 200)
    eager = IG.snr_against_num_samples(*args)
    jitted = jax.jit(IG.snr_against_num_samples, static_argnums=(1, 2, 5, 6))(*args)
    for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(j, e, rtol=1e-4)
    slope = IG.log_log_slope(eager.num_samples, eager.snr[0], eager.se[0])
    np.testing.assert_allclose(jax.jit(IG.log_log_slope)(eager.num_samples, eager.snr[0], eager.se[0]),
                               slope, rtol=1e-5)


def test_bad_inputs(key):
    with pytest.raises(ValueError, match="num_samples"):
        IG.iwae_grad(key, LOG_JOINT, MEAN, LOG_SCALE, 0, 4)
    with pytest.raises(ValueError, match="num_draws"):
        IG.dreg_grad(key, LOG_JOINT, MEAN, LOG_SCALE, 4, 0)
