"""Chapter 7's model: the direct IWAE objective's routing, and the independent evaluation."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvm_tutorial import funnel as F
from lvm_tutorial.distributions import diag_normal_log_prob
from lvm_tutorial.estimators import IWAE, SUMO
from lvm_tutorial.sumo_training import fit_sumo_seeds, packed_log_prob
from lvm_tutorial.targets import funnel_log_prob
from lvm_tutorial.vae import VAEParams

PARAMS = F.sampler_init(jax.random.key(0))


def largest_change(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_iwae_loss_value_is_the_kl_estimate_and_gradients_are_routed():
    key = jax.random.key(2)
    x_key, w_key = jax.random.split(key)

    def kl(p):
        x = F.sample_x(x_key, p, 16)
        return jnp.mean(F.iwae_log_prob(w_key, p, x, 5) - funnel_log_prob(x))

    def neg_iwae(p):
        x = jax.lax.stop_gradient(F.sample_x(x_key, p, 16))
        return -jnp.mean(F.iwae_log_prob(w_key, p, x, 5))

    @jax.jit
    def run(init_key):
        p = F.sampler_init(init_key)        # every public function of the module runs under jit
        loss = lambda q: F.reverse_kl_iwae_loss(q, key, None, num_samples=5, batch_size=16)
        return jax.value_and_grad(loss)(p), kl(p), jax.grad(kl)(p), jax.grad(neg_iwae)(p)

    (value, grads), want_value, g_kl, g_iwae = run(jax.random.key(0))
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads.decoder), jax.tree.leaves(g_kl.decoder)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(grads.encoder), jax.tree.leaves(g_iwae.encoder)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- evaluation -----------------------------------------------------------------------------

def gaussian_sampler(mean, log_scale):
    """A sampler whose p(x) is N(mean, diag exp(log_scale)^2) exactly, with q equal to the prior."""
    enc = [(w * 0, b * 0) for w, b in PARAMS.encoder]
    (w1, b1), (w2, b2) = PARAMS.decoder
    dec = [(w1, b1), (w2 * 0, jnp.concatenate([mean, log_scale]))]
    return VAEParams(enc, dec)


def test_true_reverse_kl_matches_the_closed_form_for_a_gaussian_sampler():
    mean, log_scale = jnp.array([0.3, -0.4]), jnp.array([0.2, -0.1])
    kl, se, x = F.true_reverse_kl(jax.random.key(6), jax.jit(gaussian_sampler)(mean, log_scale), 4096, 4)
    s = np.exp(np.asarray(log_scale))
    m = np.asarray(mean)
    neg_entropy = -np.sum(0.5 * np.log(2 * np.pi * np.e) + np.log(s))
    e_exp = np.exp(-2 * m[1] + 2 * s[1] ** 2)                  # E[exp(-2 x1)]
    e_log_target = (-0.5 * np.log(2 * np.pi) - m[1] - 0.5 * (m[0] ** 2 + s[0] ** 2) * e_exp
                    - 0.5 * np.log(2 * np.pi * 1.35 ** 2) - (m[1] ** 2 + s[1] ** 2) / (2 * 1.35 ** 2))
    assert abs(kl - (neg_entropy - e_log_target)) < 5 * se   # 5 SE: ~6e-7 false alarms
    assert x.shape == (4096, 2)
    terms, x_terms = F.reverse_kl_terms(jax.random.key(6), jax.jit(gaussian_sampler)(mean, log_scale), 4096, 4)
    assert terms.shape == (4096,) and terms.dtype == np.float64
    assert np.array_equal(np.asarray(x_terms), np.asarray(x))     # the same draws as true_reverse_kl
    assert kl == terms.mean() and se == terms.std(ddof=1) / np.sqrt(4096)
    # negative control: the closed form of another sampler (mean shifted by 0.3) is rejected
    other = jax.jit(gaussian_sampler)(mean + 0.3, log_scale)
    kl_other, se_other, _ = F.true_reverse_kl(jax.random.key(6), other, 4096, 4)
    assert abs(kl_other - (neg_entropy - e_log_target)) > 5 * max(se, se_other)


def test_sumo_log_prob_and_checkpoints_are_exact_when_every_weight_is_log_p():
    # q is the prior and p(x|z) ignores z, so every log-weight equals log p(x): SUMO = IWAE = log p(x).
    mean, log_scale = jnp.array([0.3, -0.4]), jnp.array([0.2, -0.1])
    sampler = jax.jit(gaussian_sampler)(mean, log_scale)
    x = np.random.default_rng(3).normal(size=(70, 2)).astype(np.float32)   # not a multiple of B
    exact = np.asarray(diag_normal_log_prob(jnp.asarray(x), mean, log_scale))
    got = packed_log_prob(jax.random.key(10), F.SAMPLER, sampler, x, SUMO(4))
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-4)
    for estimator in (IWAE(2), SUMO(4)):
        point = F.evaluate_checkpoint(jax.random.key(11), sampler, estimator, num_x=64, eval_samples=8)
        assert abs(point.gap) < 1e-4 and abs(point.own - point.true) < 1e-4 and point.true_se > 0
    # negative control: a sampler whose q is not the prior has a gap, and it is seen
    shifted = VAEParams([(w, b + 0.5) for w, b in sampler.encoder], sampler.decoder)
    point = F.evaluate_checkpoint(jax.random.key(11), shifted, IWAE(2), num_x=64, eval_samples=8)
    assert point.gap > 1e-2
    with pytest.raises(ValueError, match="estimator"):
        F.train_tracked(jax.random.key(0), PARAMS, optax.adam(1e-3), 10, 2, "iwae")
    with pytest.raises(ValueError, match="equal parts"):
        F.train_tracked(jax.random.key(0), PARAMS, optax.adam(1e-3), 10, 3, IWAE(2))


def test_train_tracked_records_every_checkpoint_of_every_run():
    keys = jax.random.split(jax.random.key(2), 2)
    small = jax.vmap(lambda k: F.sampler_init(k, latent_dim=2, hidden=8))(jax.random.split(jax.random.key(1), 2))
    state, track = F.train_tracked(keys, small, optax.adam(1e-3), 20, 2, SUMO(2), batch_size=4,
                                   num_x=32, eval_samples=16)
    assert list(track.step) == [0, 10, 20] and track.loss.shape == (2, 20)
    assert len(track.snapshots) == 3 and track.checkpoints.true.shape == (2, 3)
    assert np.all(np.asarray(state.opt_state[0].count) == 20)
    # the first snapshot is the start, the last the trained parameters
    assert track.snapshots[0] is small
    np.testing.assert_array_equal(track.snapshots[-1].decoder[0][0], state.params.decoder[0][0])
    # each run is evaluated on its own: the two runs' checkpoints differ
    assert np.all(track.checkpoints.true[0] != track.checkpoints.true[1])


def test_a_refitted_encoder_keeps_the_decoder_and_tightens_the_bound():
    """The refit trains only the encoder: the decoder is bit-for-bit the same, and the new
    encoder's ELBO on fresh model samples beats a freshly initialised encoder's by many SE."""
    keys = jax.random.split(jax.random.key(4), 2)
    small = jax.vmap(lambda k: F.sampler_init(k, latent_dim=2, hidden=16))(keys)
    refit = F.refit_encoder(keys, small, optax.adam(3e-3), 300, num_samples=4)
    for leaf, before in zip(jax.tree.leaves(refit.decoder), jax.tree.leaves(small.decoder)):
        np.testing.assert_array_equal(leaf, before)
    fresh = jax.vmap(lambda k: F.sampler_init(k, latent_dim=2, hidden=16).encoder)(keys)
    x = F.sample_x(jax.random.key(5), F.run_params(small, 0), 512)
    elbo = lambda p: np.asarray(F.iwae_log_prob(jax.random.key(6), p, x, 1))
    gain = elbo(F.run_params(refit, 0)) - elbo(VAEParams(F.run_params(fresh, 0), F.run_params(small, 0).decoder))
    # paired over 512 points; 5 SE: a false alarm about 3e-7 if the refit did nothing
    assert gain.mean() > 5 * gain.std(ddof=1) / np.sqrt(len(gain))
    # negative control: the decoder moves when it is not frozen
    moved, _ = fit_sumo_seeds(keys, F.SAMPLER, small, optax.adam(3e-3), 5, objective=F.MATCHING,
                              estimator=IWAE(4), batch_size=32)
    assert largest_change(moved.params.decoder, small.decoder) > 0
