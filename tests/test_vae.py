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
