import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lvm_tutorial import vae as V
from lvm_tutorial.networks import gaussian_head, mlp_apply, mlp_init


def test_mlp_shapes_and_jit(key):
    params = mlp_init(key, (3, 16, 4))
    assert jax.jit(mlp_apply)(params, jnp.zeros((5, 3))).shape == (5, 4)
    mean, log_scale = jax.jit(gaussian_head)(params, jnp.zeros(3))
    assert mean.shape == log_scale.shape == (2,)


def test_bernoulli_decoder_matches_scipy(key):
    params = V.vae_init(key, data_dim=6, latent_dim=2, hidden=(8,), likelihood="bernoulli")
    x = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    z = jnp.array([0.3, -0.2])
    probs = jax.nn.sigmoid(mlp_apply(params.decoder, z))
    want = stats.bernoulli.logpmf(np.asarray(x), np.asarray(probs)).sum()
    np.testing.assert_allclose(V.decoder_log_prob(params, x, z, "bernoulli"), want, rtol=1e-5)


def test_log_weights_are_log_joint_minus_log_q(key):
    params = V.vae_init(key, data_dim=2, latent_dim=3)
    x = jnp.array([0.2, -0.4])
    lw = V.vae_log_weights(jax.random.key(1), params, x, 5)
    mean, log_scale = V.encode(params, x)
    z = mean[None] + jnp.exp(log_scale)[None] * jax.random.normal(jax.random.key(1), (5, 3))
    dec_mean, dec_log_scale = gaussian_head(params.decoder, z)
    want = (stats.norm.logpdf(np.asarray(x), np.asarray(dec_mean), np.exp(np.asarray(dec_log_scale))).sum(1)
            + stats.norm.logpdf(np.asarray(z)).sum(1)
            - stats.norm.logpdf(np.asarray(z), np.asarray(mean), np.exp(np.asarray(log_scale))).sum(1))
    np.testing.assert_allclose(lw, want, rtol=1e-4, atol=1e-4)


def test_iwae_loss_and_sampling_under_jit(key):
    params = V.vae_init(key, data_dim=4, latent_dim=2, hidden=(8,), likelihood="bernoulli")
    batch = jnp.ones((3, 4))
    loss = jax.jit(V.iwae_loss, static_argnums=(3, 4))(params, key, batch, 5, "bernoulli")
    assert loss.shape == () and np.isfinite(loss)
    x, z = jax.jit(V.vae_sample, static_argnums=(2, 3))(key, params, 6, "bernoulli")
    assert x.shape == (6, 4) and z.shape == (6, 2) and set(np.unique(x)) <= {0.0, 1.0}


def test_bad_likelihood(key):
    with pytest.raises(ValueError, match="likelihood"):
        V.vae_init(key, 2, 2, likelihood="poisson")


# Posterior collapse: per-unit KL to the prior, Burda et al.'s unit activity.

def test_kl_to_standard_normal_matches_the_full_covariance_kl(key):
    from lvm_tutorial.linear_gaussian import kl_diag_to_full
    m_key, s_key = jax.random.split(key)
    mean = jax.random.normal(m_key, (5,))
    log_scale = 0.7 * jax.random.normal(s_key, (5,))
    per_unit = V.kl_to_standard_normal(mean, log_scale)
    want = kl_diag_to_full(mean, log_scale, jnp.zeros(5), jnp.eye(5))
    assert per_unit.shape == (5,) and np.all(np.asarray(per_unit) >= 0)
    np.testing.assert_allclose(per_unit.sum(), want, rtol=1e-5)
    # a unit at the prior: zero; a unit with mu = 0, sigma = 1/2: 1/2 (1/4 - 1) + log 2
    got = V.kl_to_standard_normal(jnp.zeros(2), jnp.log(jnp.array([1.0, 0.5])))
    np.testing.assert_allclose(got, [0.0, np.log(2.0) - 0.375], atol=1e-7)
    # near the prior the expm1 form keeps its digits: 2 s^2 - ... for s = 1e-3 (float64: 1e-6)
    small = V.kl_to_standard_normal(jnp.zeros(1), jnp.full(1, 1e-3))
    np.testing.assert_allclose(small, [0.5 * np.expm1(2e-3) - 1e-3], rtol=1e-4)
    jitted = jax.jit(V.kl_to_standard_normal)(mean, log_scale)
    np.testing.assert_allclose(jitted, per_unit, rtol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        V.kl_to_standard_normal(jnp.zeros(2), jnp.zeros(3))


def _exact_posterior_means(key, num_points):
    """Exact posterior means of a linear-Gaussian model whose second column of W is zero, at
    ``num_points`` draws of x, and the closed-form activity A_u = 1 - Sigma_uu (law of total
    variance: Cov(z) = I = Cov_x(E[z | x]) + E_x[Cov(z | x)])."""
    from lvm_tutorial import linear_gaussian as lg
    model_key, x_key = jax.random.split(key)
    model = lg.make_linear_gaussian(model_key, data_dim=4, latent_dim=3)
    model = model._replace(weight=model.weight * jnp.array([1.0, 0.0, 0.2])[None, :])
    x, _ = lg.sample(x_key, model, num_points)
    means = jax.vmap(lambda x_n: lg.posterior_diag(model, x_n)[0])(x)
    cov = lg.posterior(model, x[0])[1]
    return model, means, 1.0 - jnp.diag(cov)


def _matches_activity(got, want, num):
    """The collapsed unit exactly still; the others within 5 SE of the closed form. The means
    are linear in Gaussian x, so a sample variance has SE A sqrt(2 / (N - 1)); 5 SE: about 6e-7
    false alarms per unit."""
    got, want = np.asarray(got), np.asarray(want)
    se = want * np.sqrt(2.0 / (num - 1))
    moving = want > 0
    return bool(np.all(got[~moving] < 1e-10)
                and np.all(np.abs(got - want)[moving] < 5 * se[moving]))


def test_unit_activity_is_the_variance_of_exact_posterior_means(key):
    num = 4000
    model, means, want = _exact_posterior_means(key, num)
    assert float(want[1]) == 0.0                              # the zero column: collapsed
    assert 0.01 < float(want[2]) < 0.5 < float(want[0])     # a weak unit and a strong one
    got = V.unit_activity(means)
    assert _matches_activity(got, want, num)
    assert int(V.active_units(means)) == 2
    np.testing.assert_allclose(jax.jit(V.unit_activity)(means), got, rtol=1e-6)
    assert int(jax.jit(V.active_units)(means)) == 2
    # negative control: the variance of *sampled* z adds each unit's posterior variance (1 for
    # the collapsed unit, whose posterior is the prior) and calls every unit active
    from lvm_tutorial import linear_gaussian as lg
    cov = lg.posterior(model, jnp.zeros(4))[1]
    noise = jax.random.normal(jax.random.key(7), means.shape)
    sampled = means + noise * jnp.sqrt(jnp.diag(cov))[None, :]
    assert not _matches_activity(V.unit_activity(sampled), want, num)
    assert int(V.active_units(sampled)) == 3


def test_unit_activity_centres_the_means():
    # a collapsed unit whose q(z_u | x) = N(0.5, 1) for every x is inactive; the uncentred
    # second moment (a known mistake) would give 0.25 and call it active
    rng = np.random.default_rng(0)
    means = np.stack([np.full(500, 0.5), rng.normal(0.0, 0.3, 500)], axis=1)
    got = V.unit_activity(jnp.asarray(means, jnp.float32))
    assert float(got[0]) < 1e-10 and int(V.active_units(jnp.asarray(means))) == 1
    uncentred = np.mean(means**2, axis=0)
    assert uncentred[0] > 1e-2                                # the control would count it
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        V.unit_activity(jnp.zeros(5))
