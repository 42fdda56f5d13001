"""The exact SUMO trainer: one step against autodiff of the per-example objectives, the same
results for any buffer or chunk size, both chapter models, and few compilations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvm_tutorial import funnel as F
from lvm_tutorial import sumo_training as S
from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.distributions import diag_normal_log_prob
from lvm_tutorial.estimators import IWAE, SUMO, iwae_bound, sumo_from_log_weights
from lvm_tutorial.vae import VAEParams, latent_model, vae_init

FUNNEL_PARAMS = F.sampler_init(jax.random.key(0), latent_dim=4, hidden=16)
DIGITS = latent_model("bernoulli")
DIGITS_DATA = (np.random.default_rng(0).random((40, 6)) < 0.3).astype(np.float32)
DIGITS_PARAMS = vae_init(jax.random.key(1), 6, 3, (8,), "bernoulli")


def reference_grads(key, model, objective, estimator, params, lengths, num_terms, rows=None,
                    encoder_objective=None):
    """Step 0 by hand: each example's estimate from its own keyed noise, written with the plain
    estimators (``sumo_from_log_weights``, ``iwae_bound``) and differentiated by autodiff, each
    network through its own objective; summed over the examples."""
    _, noise_key, _ = jax.random.split(key, 3)
    batch = lengths.shape[1]
    keys = S._example_keys(noise_key, 0, jnp.arange(batch))
    latent_dim = params.decoder[0][0].shape[0]
    sg = jax.lax.stop_gradient
    matching = isinstance(objective, S.DensityMatching)

    def estimate(route, b, x):
        n = int(lengths[0, b])
        eps = jax.vmap(lambda p: jax.random.normal(jax.random.fold_in(keys[b], p + 1), (latent_dim,)))(
            jnp.arange(n))
        mean, log_scale = model.encode_fn(route.encoder, x)
        z = mean[None] + jnp.exp(log_scale)[None] * eps
        log_w = model.log_joint_fn(route.decoder, x, z) - diag_normal_log_prob(z, mean, log_scale)
        if isinstance(estimator, IWAE):
            return iwae_bound(log_w)
        return sumo_from_log_weights(log_w, num_terms[0, b], estimator.min_terms, tail=estimator.tail)

    def total(p):
        out = 0.0
        for b in range(batch):
            if matching:
                x = objective.sample_fn(p.decoder, jax.random.fold_in(keys[b], 0))
                target = objective.log_target_fn(x)
            else:
                x, target = jnp.asarray(DIGITS_DATA[rows[b]]), 0.0
            value_dec = estimate(VAEParams(sg(p.encoder), p.decoder), b, x)
            value_enc = estimate(VAEParams(p.encoder, sg(p.decoder)), b, sg(x))
            sign = 1.0 if matching else -1.0
            enc = encoder_objective(value_enc) if encoder_objective else (
                value_enc ** 2 if isinstance(estimator, SUMO) else -value_enc)
            out = out + (sign * value_dec - target + enc - sg(enc)) / batch
        return out

    return jax.jit(jax.grad(total))(params)


def one_step_grads(key, model, objective, estimator, params, data=None, batch_size=5, **kwargs):
    """The gradient fit_sumo applied at step 0: with SGD at rate 1, params - new params."""
    state, info = S.fit_sumo(key, model, params, optax.sgd(1.0), 1, objective=objective,
                             estimator=estimator, data=data, batch_size=batch_size, **kwargs)
    return jax.tree.map(jnp.subtract, params, state.params), info


def assert_trees_close(a, b, rtol=2e-4, atol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def largest_difference(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("estimator", [SUMO(2), IWAE(3)])
def test_one_step_is_the_update_of_the_summed_per_example_gradients_on_the_funnel(estimator):
    key = jax.random.key(3)
    got, info = one_step_grads(key, F.SAMPLER, F.MATCHING, estimator, FUNNEL_PARAMS)
    lengths, num_terms = S.draw_lengths(jax.random.split(key, 3)[0], estimator, 1, 5)
    if isinstance(estimator, SUMO):
        np.testing.assert_array_equal(info.num_terms, num_terms)
    want = reference_grads(key, F.SAMPLER, F.MATCHING, estimator, FUNNEL_PARAMS, lengths, num_terms)
    assert_trees_close(got, want)
    # negative control: an encoder that maximised the estimate instead is caught
    wrong = reference_grads(key, F.SAMPLER, F.MATCHING, estimator, FUNNEL_PARAMS, lengths, num_terms,
                            encoder_objective=lambda v: v if isinstance(estimator, IWAE) else -v)
    assert largest_difference(wrong.encoder, want.encoder) > 100 * 2e-4


def test_the_digits_vae_trains_through_the_same_step_with_data():
    key = jax.random.key(4)
    got, _ = one_step_grads(key, DIGITS, S.DensityEstimation(), SUMO(2), DIGITS_PARAMS,
                            data=jnp.asarray(DIGITS_DATA))
    lengths, num_terms = S.draw_lengths(jax.random.split(key, 3)[0], SUMO(2), 1, 5)
    rows = np.asarray(S._minibatches(jax.random.split(key, 3)[2], 1, len(DIGITS_DATA), 5))[0]
    want = reference_grads(key, DIGITS, S.DensityEstimation(), SUMO(2), DIGITS_PARAMS, lengths,
                           num_terms, rows=rows)
    assert_trees_close(got, want)
    # negative control: other rows of the data give another gradient
    other = reference_grads(key, DIGITS, S.DensityEstimation(), SUMO(2), DIGITS_PARAMS, lengths,
                            num_terms, rows=(rows + 1) % len(DIGITS_DATA))
    assert largest_difference(other, want) > 100 * 2e-4


def test_training_the_digits_vae_with_sumo_raises_its_held_out_bound():
    from lvm_tutorial.data import load_digits_binary
    from lvm_tutorial.digits import log_likelihood_estimate

    train, test = load_digits_binary()
    params = vae_init(jax.random.key(1), train.shape[1], 8, (64,), "bernoulli")
    state, info = S.fit_sumo(jax.random.key(2), DIGITS, params, optax.adam(3e-3), 300,
                             estimator=SUMO(4), data=train, batch_size=32)
    before = log_likelihood_estimate(jax.random.key(3), params, test, 200, 200)
    after = log_likelihood_estimate(jax.random.key(3), state.params, test, 200, 200)
    gain = np.asarray(after - before)
    se = gain.std(ddof=1) / np.sqrt(len(gain))
    # 300 steps raise the test bound by about 20 nats; 10 nats and 5 SE: no false alarm (~1e-6)
    assert gain.mean() > 10.0 and gain.mean() > 5 * se
    assert np.all(np.isfinite(info.loss)) and info.num_terms.shape == (300, 32)


@pytest.mark.parametrize("options", [dict(rungs=(64,)), dict(rungs=(16, 24, 32)), dict(chunk_size=5)])
def test_results_do_not_depend_on_buffers_or_chunks(options):
    key, optimizer = jax.random.key(5), optax.adam(1e-2)
    run = lambda **kw: S.fit_sumo(key, F.SAMPLER, FUNNEL_PARAMS, optimizer, 12, objective=F.MATCHING,
                                  estimator=SUMO(2), batch_size=5, **kw)
    base, base_info = run()
    other, other_info = run(**options)
    assert_trees_close(base.params, other.params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(base_info.loss, other_info.loss, rtol=1e-4, atol=1e-5)
    # negative control: another key is another run
    third, _ = S.fit_sumo(jax.random.key(6), F.SAMPLER, FUNNEL_PARAMS, optimizer, 12,
                          objective=F.MATCHING, estimator=SUMO(2), batch_size=5)
    assert largest_difference(base.params, third.params) > 1e-3


@pytest.mark.parametrize("estimator", [SUMO(2), IWAE(3)])
def test_seeds_trained_at_once_equal_separate_runs(estimator):
    """fit_sumo_seeds (vmapped, one buffer, padded plans) against fit_sumo per seed, which
    packs into other buffers: equal up to rounding; one program for all seeds, none new for
    other seeds; negative control: the runs themselves differ. (Adam: plain SGD diverges at
    once on an unshrunk funnel sampler; the digits test below uses SGD, whose step, unlike
    Adam's, is proportional to the gradient, so a gradient counted twice would show.)"""
    keys = jax.random.split(jax.random.key(11), 3)
    params = jax.vmap(lambda k: F.sampler_init(k, latent_dim=4, hidden=16))(keys)
    run = lambda keys: S.fit_sumo_seeds(keys, F.SAMPLER, params, optax.adam(1e-2), 30,
                                        objective=F.MATCHING, estimator=estimator, batch_size=5,
                                        chunk_size=16)
    many, info = run(keys)
    for r in range(3):
        one, one_info = S.fit_sumo(keys[r], F.SAMPLER, F.run_params(params, r), optax.adam(1e-2), 30,
                                   objective=F.MATCHING, estimator=estimator, batch_size=5,
                                   chunk_size=16)
        assert_trees_close(F.run_params(many.params, r), one.params, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(info.loss[r], one_info.loss, rtol=1e-4, atol=1e-3)
        if isinstance(estimator, SUMO):
            np.testing.assert_array_equal(info.num_terms[r], one_info.num_terms)
    assert largest_difference(F.run_params(many.params, 0), F.run_params(many.params, 1)) > 1e-2
    with count_compilations() as again:
        run(jax.random.split(jax.random.key(12), 3))
    assert again.count <= 2, again.count      # key handling only: the training scan is reused


def test_seeds_trained_at_once_on_data_take_their_own_minibatches():
    keys = jax.random.split(jax.random.key(13), 2)
    params = jax.vmap(lambda k: vae_init(k, 6, 3, (8,), "bernoulli"))(keys)
    data = jnp.asarray(DIGITS_DATA)
    many, _ = S.fit_sumo_seeds(keys, DIGITS, params, optax.sgd(1e-2), 6, estimator=SUMO(2), data=data,
                               batch_size=5)
    for r in range(2):
        one, _ = S.fit_sumo(keys[r], DIGITS, F.run_params(params, r), optax.sgd(1e-2), 6,
                            estimator=SUMO(2), data=data, batch_size=5)
        assert_trees_close(F.run_params(many.params, r), one.params, rtol=1e-4, atol=1e-6)
    # negative control: a gradient counted twice (SGD at twice the rate) is caught
    twice, _ = S.fit_sumo(keys[1], DIGITS, F.run_params(params, 1), optax.sgd(2e-2), 6,
                          estimator=SUMO(2), data=data, batch_size=5)
    assert largest_difference(F.run_params(many.params, 1), twice.params) > 100 * 1e-6


def test_continuing_and_equal_configurations_compile_nothing_new():
    key = jax.random.key(7)
    run = lambda k, state=None, optimizer=optax.adam(1e-3): S.fit_sumo(
        k, F.SAMPLER, FUNNEL_PARAMS, optimizer, 20, objective=F.MATCHING, estimator=SUMO(2),
        batch_size=5, state=state, chunk_size=16)
    with count_compilations() as first:
        state, _ = run(key)
    with count_compilations() as again:     # a new but equal optimiser, a continued state
        state, info = run(jax.random.key(8), state, optax.adam(1e-3))
    assert first.count <= 12 and again.count == 0, (first.count, again.count)
    assert int(state.opt_state[0].count) == 40     # 20 + 20 steps: one TrainState, one meaning
    with count_compilations() as other:      # negative control: another rate is another program
        run(key, None, optax.adam(2e-3))
    assert other.count >= 1


def test_buffer_rungs_cover_the_typical_step():
    rungs = S.buffer_rungs(SUMO(4), 32)
    assert rungs == tuple(sorted(rungs)) and all(r % 32 == 0 for r in rungs)
    lengths, _ = S.draw_lengths(jax.random.key(9), SUMO(4), 4000, 32)
    totals = lengths.sum(axis=1)
    assert 0.4 < np.mean(totals <= rungs[0]) < 0.6         # the median step fits the first rung
    assert np.mean(totals > rungs[-1]) < 0.02
    assert S.buffer_rungs(IWAE(9), 32) == (288,)


def test_bad_arguments_are_named():
    fit = lambda **kw: S.fit_sumo(jax.random.key(0), F.SAMPLER, FUNNEL_PARAMS, optax.adam(1e-3),
                                  **{"num_steps": 2, "objective": F.MATCHING, **kw})
    with pytest.raises(ValueError, match="num_steps"):
        fit(num_steps=0)
    with pytest.raises(ValueError, match="chunk_size"):
        fit(batch_size=8, chunk_size=4)
    with pytest.raises(ValueError, match="needs data"):
        fit(objective=S.DensityEstimation())
    with pytest.raises(ValueError, match="min_terms"):
        fit(estimator=SUMO(0))
    with pytest.raises(ValueError, match="x must be"):
        S.packed_log_prob(jax.random.key(0), F.SAMPLER, FUNNEL_PARAMS, np.zeros(4))
