"""Tests of lvm_tutorial.inference: local q's, the VAE's log-joint, and the gap bookkeeping."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvm_tutorial import linear_gaussian as lg
from lvm_tutorial.estimators import elbo
from lvm_tutorial.inference import (GaussianQ, amortisation_gaps, batch_log_weights, gaussian_log_weights,
                                    local_elbo_loss, mean_and_stderr, vae_log_joint)
from lvm_tutorial.training import fit
from lvm_tutorial.vae import encode, vae_init, vae_log_weights

MODEL = lg.make_linear_gaussian(jax.random.key(0), data_dim=5, latent_dim=2)
X = lg.sample(jax.random.key(1), MODEL, 3)[0]


def test_log_weights_at_the_exact_posterior_all_equal_log_marginal():
    # With q = p(z | x) every weight is p(x, z) / p(z | x) = p(x): the closed-form oracle.
    q = GaussianQ(*lg.posterior_diag(MODEL, X[0]))
    log_w = jax.jit(gaussian_log_weights, static_argnums=(1, 4))(jax.random.key(2), partial(lg.log_joint, MODEL),
                                                                X[0], q, 64)
    assert log_w.shape == (64,)
    np.testing.assert_allclose(log_w, lg.log_marginal(MODEL, X[0]), atol=2e-4)


def test_monte_carlo_elbo_is_unbiased_and_a_wrong_variant_is_caught():
    q = GaussianQ(jnp.array([0.5, -1.0]), jnp.array([-0.3, 0.2]))
    mean, cov = lg.posterior(MODEL, X[0])
    exact = lg.log_marginal(MODEL, X[0]) - lg.kl_diag_to_full(q.mean, q.log_scale, mean, cov)
    z_key = jax.random.key(3)
    log_w = gaussian_log_weights(z_key, partial(lg.log_joint, MODEL), X[0], q, 50_000)
    se = jnp.std(log_w) / jnp.sqrt(log_w.shape[0])
    assert abs(elbo(log_w) - exact) < 5 * se  # 5 SE: ~6e-7 false alarms
    # Negative control: forgetting -log q(z) (the entropy term) is caught.
    z = q.mean[None] + jnp.exp(q.log_scale)[None] * jax.random.normal(z_key, (50_000, 2))
    wrong = jnp.mean(lg.log_joint(MODEL, X[0], z))
    assert abs(wrong - exact) > 5 * se


def test_local_elbo_loss_sums_points_and_runs_under_jit():
    params = GaussianQ(jnp.zeros((3, 2)), jnp.zeros((3, 2)))
    loss_fn = partial(local_elbo_loss, log_joint_fn=partial(lg.log_joint, MODEL), num_samples=4)
    key = jax.random.key(4)
    total = jax.jit(loss_fn)(params, key, X)
    keys = jax.random.split(key, 3)
    one_point = jax.jit(gaussian_log_weights, static_argnums=(1, 4))
    log_joint_fn = partial(lg.log_joint, MODEL)
    by_hand = -sum(elbo(one_point(keys[n], log_joint_fn, X[n], GaussianQ(params.mean[n], params.log_scale[n]), 4))
                   for n in range(3))
    np.testing.assert_allclose(total, by_hand, rtol=1e-5)
    batched = jax.jit(batch_log_weights, static_argnums=(1, 4))(key, partial(lg.log_joint, MODEL), X, params, 4)
    assert batched.shape == (3, 4)
    np.testing.assert_allclose(-jnp.sum(batched.mean(-1)), total, rtol=1e-5)


def test_per_datapoint_fit_recovers_the_diagonal_posterior():
    loss_fn = partial(local_elbo_loss, log_joint_fn=partial(lg.log_joint, MODEL), num_samples=8)
    init = GaussianQ(jnp.zeros((3, 2)), jnp.zeros((3, 2)))
    optimizer = optax.adam(optax.exponential_decay(0.05, 400, 0.05))
    state, _ = fit(jax.random.key(5), loss_fn, init, optimizer, 800, data=X)
    for n in range(3):
        mean, cov = lg.posterior(MODEL, X[n])
        kl = lg.kl_diag_to_full(state.params.mean[n], state.params.log_scale[n], mean, cov)
        assert kl < 1e-2


def test_vae_log_joint_matches_vae_log_weights():
    params = vae_init(jax.random.key(6), 2, 2, (8,))
    x = jnp.array([0.3, -0.4])
    key = jax.random.key(7)
    q = GaussianQ(*encode(params, x))
    ours = jax.jit(gaussian_log_weights, static_argnums=(1, 4))(key, partial(vae_log_joint, params), x, q, 16)
    np.testing.assert_allclose(ours, vae_log_weights(key, params, x, 16), rtol=1e-5, atol=1e-5)
    assert jax.jit(vae_log_joint)(params, x, jnp.zeros((4, 2))).shape == (4,)


def test_gaps_add_up_and_stderr():
    log_p, opt, amort = jnp.array([-1.0, -2.0]), jnp.array([-1.5, -2.5]), jnp.array([-2.0, -3.5])
    gaps = jax.jit(amortisation_gaps)(log_p, opt, amort)
    np.testing.assert_allclose(gaps.approximation, [0.5, 0.5])
    np.testing.assert_allclose(gaps.amortisation, [0.5, 1.0])
    np.testing.assert_allclose(gaps.inference, log_p - amort)
    mean, se = jax.jit(mean_and_stderr)(jnp.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose([mean, se], [2.5, np.std([1, 2, 3, 4], ddof=1) / 2], rtol=1e-6)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="log_marginal"):
        amortisation_gaps(jnp.zeros(3), jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(ValueError, match="values"):
        mean_and_stderr(jnp.zeros(1))
    with pytest.raises(ValueError, match="batch"):
        local_elbo_loss(GaussianQ(jnp.zeros((2, 2)), jnp.zeros((2, 2))), jax.random.key(0), X,
                        partial(lg.log_joint, MODEL), 2)
    with pytest.raises(ValueError, match="xs"):
        batch_log_weights(jax.random.key(0), partial(lg.log_joint, MODEL), X[0],
                          GaussianQ(jnp.zeros((3, 2)), jnp.zeros((3, 2))), 2)
    with pytest.raises(ValueError, match="q.mean"):
        gaussian_log_weights(jax.random.key(0), partial(lg.log_joint, MODEL), X[0],
                             GaussianQ(jnp.zeros(2), jnp.zeros(3)), 2)
