import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from lvm_tutorial import funnel as F
from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.distributions import diag_normal_log_prob
from lvm_tutorial.estimators import sumo_from_log_weights
from lvm_tutorial.targets import funnel_log_prob
from lvm_tutorial.vae import VAEParams

M = 4
PARAMS = F.sampler_init(jax.random.key(0))


def layout(num_terms, size):
    plan = F.pack_microbatches(np.asarray(num_terms)[None], M, size)
    assert len(plan.step) == 1
    return jnp.asarray(plan.segment_ids[0]), jnp.asarray(plan.positions[0])


def to_grid(flat, segment_ids, num_terms):
    """The flat buffer's examples as rows of a padded (E, m + max K) grid."""
    flat, segment_ids = np.asarray(flat), np.asarray(segment_ids)
    grid = np.zeros((len(num_terms), M + max(num_terms)), np.float32)
    for e in range(len(num_terms)):
        row = flat[segment_ids == e]
        grid[e, :len(row)] = row
    return jnp.asarray(grid)


def flat_without_resets(log_weights, segment_ids, positions, num_segments, min_terms):
    """Known-wrong variant: prefix sums run across example boundaries."""
    same = jnp.ones_like(segment_ids)
    return F.sumo_flat(log_weights, same * 0, positions, 1, min_terms)[0] * jnp.ones(num_segments)


# --- the flat kernel ----------------------------------------------------------------------

def test_sumo_flat_agrees_with_sumo_from_log_weights():
    num_terms = [1, 3, 2, 7, 1, 1, 150, 2, 1, 12]
    segment_ids, positions = layout(num_terms, 256)
    coef = jnp.arange(1.0, 11.0)
    flat = jax.jit(jax.value_and_grad(
        lambda lw: jnp.sum(F.sumo_flat(lw, segment_ids, positions, len(num_terms), M) * coef)))
    grid = jax.jit(jax.value_and_grad(
        lambda g: jnp.sum(sumo_from_log_weights(g, jnp.asarray(num_terms), M) * coef)))
    per_example = jax.jit(lambda lw: F.sumo_flat(lw, segment_ids, positions, len(num_terms), M))
    log_w = jnp.asarray(np.random.default_rng(0).normal(size=256).astype(np.float32)) * 3.0
    # the second case: one example spans 400 nats, which takes the exact running-max branch
    for lw in (log_w, log_w.at[:4].set(-400.0)):
        want = sumo_from_log_weights(to_grid(lw, segment_ids, num_terms), jnp.asarray(num_terms), M)
        np.testing.assert_allclose(per_example(lw), want, rtol=1e-5, atol=2e-4)
        (v_flat, g_flat), (v_grid, g_grid) = flat(lw), grid(to_grid(lw, segment_ids, num_terms))
        np.testing.assert_allclose(v_flat, v_grid, rtol=1e-5)
        np.testing.assert_allclose(to_grid(g_flat, segment_ids, num_terms), g_grid, rtol=1e-4, atol=1e-4)
        assert np.all(np.isfinite(g_flat))
    # negative control: prefix sums that do not restart at each example are caught
    wrong = flat_without_resets(log_w, segment_ids, positions, len(num_terms), M)
    assert np.max(np.abs(np.asarray(wrong) - np.asarray(per_example(log_w)))) > 0.1


@pytest.mark.parametrize("block", [4, 8, 32])
def test_log_prefix_restarts_at_each_example_for_any_block_and_spread(block):
    num_terms = [1, 3, 40, 2, 7, 1]
    segment_ids, _ = layout(num_terms, 96)
    rng = np.random.default_rng(1)
    log_w = rng.normal(size=96).astype(np.float32) * 3.0
    log_w[4:8] = -400.0                    # an example whose early weights sit 400 nats below its late ones
    want = np.zeros(96)
    for e in range(len(num_terms)):
        idx = np.flatnonzero(np.asarray(segment_ids) == e)
        want[idx] = np.logaddexp.accumulate(log_w[idx].astype(np.float64))
    got = np.asarray(F._log_prefix(jnp.asarray(log_w), segment_ids, block))
    used = np.asarray(segment_ids) < len(num_terms)
    np.testing.assert_allclose(got[used], want[used], rtol=1e-5, atol=1e-4)
    # negative control: one log-sum over the whole buffer, with no restart at each example
    no_restart = np.logaddexp.accumulate(log_w.astype(np.float64))
    assert np.max(np.abs(no_restart[used] - want[used])) > 1.0


def test_sumo_flat_rejects_bad_arguments():
    segment_ids, positions = layout([1, 2], 16)
    with pytest.raises(ValueError, match="min_terms"):
        F.sumo_flat(jnp.zeros(16), segment_ids, positions, 2, 0)
    with pytest.raises(ValueError, match="1-D"):
        F.sumo_flat(jnp.zeros((2, 8)), segment_ids, positions, 2, M)


def test_pack_microbatches_places_every_example_once():
    num_terms = np.array([[1, 2, 3, 1], [60, 1, 70, 2], [1, 1, 1, 1]])
    plan = F.pack_microbatches(num_terms, M, 80)
    assert list(plan.step) == [0, 1, 1, 2]                  # step 1 needs two buffers
    assert list(plan.last) == [True, False, True, True]
    for t, s in enumerate(plan.step):
        seats = np.flatnonzero(plan.example_weight[t])
        lengths = np.bincount(plan.segment_ids[t][plan.segment_ids[t] < 4], minlength=4)[seats]
        assert np.all(plan.positions[t][plan.segment_ids[t] == seats[-1]] == np.arange(lengths[-1]))
        assert lengths.sum() <= 80
    assert np.isclose(plan.example_weight.sum(), 3.0)       # each example weighs 1/B once
    assert np.bincount(plan.segment_ids[1], minlength=5)[:2].tolist() == [64, 5]
    assert np.bincount(plan.segment_ids[2], minlength=5)[:2].tolist() == [74, 6]
    with pytest.raises(ValueError, match="buffer_size"):
        F.pack_microbatches(num_terms, M, 70)
    with pytest.raises(ValueError, match="steps, batch"):
        F.pack_microbatches(np.ones(3, int), M, 80)


# --- gradients of one micro-batch ---------------------------------------------------------

def plain_head(params, x):
    """The sampler's networks with plain ``x @ w`` (no hand-written gradient): the reference."""
    (w1, b1), (w2, b2) = params
    mean, log_scale = jnp.split(jnp.tanh(x @ w1 + b1) @ w2 + b2, 2, axis=-1)
    return mean, log_scale


def padded_objectives(params, noise, segment_ids, num_terms, example_weight):
    """The two objectives with sumo_from_log_weights on a padded grid, differentiated by autodiff
    (through ``plain_head``, not the package's hand-written matmul gradient)."""
    z0, eps_x, eps = noise
    sg = jax.lax.stop_gradient

    def values(route):
        mean, log_scale = plain_head(route.decoder, z0)
        x = mean + jnp.exp(log_scale) * eps_x
        q_mean, q_log_scale = plain_head(route.encoder, x)
        idx = np.zeros((len(num_terms), M + max(num_terms)), int)   # grid entry -> flat slot
        for e in range(len(num_terms)):
            idx[e, :M + num_terms[e]] = np.flatnonzero(np.asarray(segment_ids) == e)
        z = q_mean[:, None] + jnp.exp(q_log_scale)[:, None] * eps[idx]
        dec_mean, dec_log_scale = plain_head(route.decoder, z)
        log_w = (diag_normal_log_prob(x[:, None], dec_mean, dec_log_scale)
                 + diag_normal_log_prob(z, 0.0, jnp.zeros(z.shape[-1]))
                 - diag_normal_log_prob(z, q_mean[:, None], q_log_scale[:, None]))
        return sumo_from_log_weights(log_w, jnp.asarray(num_terms), M), x

    s_dec, x = values(VAEParams(sg(params.encoder), params.decoder))
    s_enc, _ = values(VAEParams(params.encoder, sg(params.decoder)))
    w = example_weight[:len(num_terms)]
    return jnp.sum(w * (s_dec - funnel_log_prob(x))) + jnp.sum(w * (s_enc ** 2 - sg(s_enc ** 2)))


def test_microbatch_grads_match_autodiff_of_the_padded_objectives():
    batch, size = 6, 64
    num_terms = [1, 3, 2, 20, 1, 5]
    plan = F.pack_microbatches(np.asarray([num_terms]), M, size)
    keys = jax.random.split(jax.random.key(1), 3)
    noise = (jax.random.normal(keys[0], (batch, 8)), jax.random.normal(keys[1], (batch, 2)),
             jax.random.normal(keys[2], (size, 8)))
    seg, pos, w = (jnp.asarray(a[0]) for a in plan[:3])
    mb_grads = jax.jit(F.microbatch_grads, static_argnums=5)
    grads, dec, enc = mb_grads(PARAMS, noise, seg, pos, w, M)
    want = jax.jit(jax.grad(lambda p: padded_objectives(p, noise, seg, num_terms, w)))(PARAMS)
    for got_leaf, want_leaf in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
        np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-4, atol=1e-4)
    assert np.isfinite(dec) and enc > 0
    # a step split into two micro-batches has the same gradient as the step in one buffer
    split = F.pack_microbatches(np.asarray([num_terms]), M, 24)
    assert len(split.step) > 1
    total, offset = None, 0
    for t in range(len(split.step)):
        eps_t = jnp.zeros((size, 8))      # padded to the first buffer's size: no new compile
        seats = offset + np.flatnonzero(split.example_weight[t])   # the step's example indices
        offset += len(seats)
        for local, e in enumerate(seats):            # carry each example's own noise along
            src = np.flatnonzero(np.asarray(seg) == e)
            dst = np.flatnonzero(split.segment_ids[t] == local)
            eps_t = eps_t.at[dst].set(noise[2][src])
        noise_t = (jnp.zeros((batch, 8)).at[:len(seats)].set(noise[0][seats]),
                   jnp.zeros((batch, 2)).at[:len(seats)].set(noise[1][seats]), eps_t)
        seg_t = np.full(size, batch, np.int32)
        pos_t = np.zeros(size, np.int32)
        seg_t[:24], pos_t[:24] = split.segment_ids[t], split.positions[t]
        g_t, _, _ = mb_grads(PARAMS, noise_t, jnp.asarray(seg_t), jnp.asarray(pos_t),
                             jnp.asarray(split.example_weight[t]), M)
        total = g_t if total is None else jax.tree.map(jnp.add, total, g_t)
    for a, b in zip(jax.tree.leaves(total), jax.tree.leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# --- the objectives for fit ---------------------------------------------------------------

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


# --- the trainer ----------------------------------------------------------------------------

def test_fit_sumo_compiles_a_bounded_number_of_programs():
    optimizer = optax.adam(3e-4)
    with count_compilations() as first:
        state, info = F.fit_sumo(jax.random.key(4), PARAMS, optimizer, 60, batch_size=8, chunk_size=16)
    with count_compilations() as again:       # a new key draws new K values: nothing recompiles
        state, info2 = F.fit_sumo(jax.random.key(5), PARAMS, optimizer, 60, batch_size=8, state=state,
                                  chunk_size=16)
    assert first.count <= 2 and again.count == 0
    assert info.loss.shape == (60,) and info.num_terms.shape == (60, 8)
    assert np.all(np.isfinite(info2.loss)) and np.all(info2.sumo_sq > 0)
    assert len(np.unique(info.num_terms)) > 5        # K really varies from example to example
    with pytest.raises(ValueError, match="chunk_size"):
        F.fit_sumo(jax.random.key(4), PARAMS, optimizer, 5, batch_size=8, chunk_size=4)
    with pytest.raises(ValueError, match="num_steps"):
        F.fit_sumo(jax.random.key(4), PARAMS, optimizer, 0)


def leading_axis_products(fn, *args) -> list[str]:
    """The dots in ``fn``'s compiled CPU program that contract the leading axis of a matrix
    (both sides longer than 1; the form XLA's CPU backend leaves to a slow generic kernel)."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    dims = {m[1]: [int(d) for d in m[2].split(",") if d]
            for m in re.finditer(r"%([\w.\-]+) = \w+\[([\d,]*)\]", text)}
    pattern = r"%([\w.\-]+) = \S+ dot\(%([\w.\-]+), %[\w.\-]+\), lhs_contracting_dims=\{0\}"
    return [m[1] for m in re.finditer(pattern, text)
            if len(dims.get(m[2], [])) == 2 and min(dims[m[2]]) > 1]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a property of XLA's CPU backend")
def test_microbatch_gradients_avoid_leading_axis_products():
    batch, size = 32, 256
    num_terms = np.full((1, batch), 3)
    plan = F.pack_microbatches(num_terms, M, size)
    noise = (jnp.zeros((batch, 8)), jnp.zeros((batch, 2)), jnp.zeros((size, 8)))
    seg, pos, w = (jnp.asarray(a[0]) for a in plan[:3])
    grads = lambda p, n, s, q, w: F.microbatch_grads(p, n, s, q, w, M)
    assert leading_axis_products(grads, PARAMS, noise, seg, pos, w) == []
    # negative control: autodiff of a plain product leaves one (the weight gradient x^T g)
    plain = jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w)))
    assert len(leading_axis_products(plain, jnp.zeros((128, 4)), jnp.zeros((size, 128)))) == 1


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


def test_x1_distances_and_neck():
    x1 = np.random.default_rng(1).normal(0.1, 1.5, size=500)
    samples = np.stack([np.zeros_like(x1), x1], axis=1)
    want_ks = stats.kstest(x1, "norm", args=(0, 1.35)).statistic
    assert abs(F.x1_ks(samples) - want_ks) < 1e-12
    # W1 = integral of |F_n - Phi| over the line, by quadrature
    grid = np.linspace(-12, 12, 400_001)
    f_n = np.searchsorted(np.sort(x1), grid, side="right") / len(x1)
    want_w1 = np.trapezoid(np.abs(f_n - stats.norm.cdf(grid, scale=1.35)), grid)
    assert abs(F.x1_wasserstein(samples) - want_w1) < 1e-4
    quantiles = stats.norm.ppf((np.arange(2000) + 0.5) / 2000) * 1.35   # nearly the target itself
    assert F.x1_wasserstein(np.stack([quantiles * 0, quantiles], 1)) < 2e-3
    assert abs(F.EXACT_NECK_FRACTION - stats.norm.cdf(-2 / 1.35)) < 1e-12
    assert F.neck_fraction(samples) == np.mean(x1 < -2)
    with pytest.raises(ValueError, match="samples"):
        F.x1_ks(np.zeros(5))


def test_sumo_log_prob_and_checkpoints_are_exact_when_every_weight_is_log_p():
    # q is the prior and p(x|z) ignores z, so every log-weight equals log p(x): SUMO = IWAE = log p(x).
    mean, log_scale = jnp.array([0.3, -0.4]), jnp.array([0.2, -0.1])
    sampler = jax.jit(gaussian_sampler)(mean, log_scale)
    x = np.random.default_rng(3).normal(size=(70, 2)).astype(np.float32)   # not a multiple of B
    exact = np.asarray(diag_normal_log_prob(jnp.asarray(x), mean, log_scale))
    np.testing.assert_allclose(F.sumo_log_prob(jax.random.key(10), sampler, x), exact, rtol=1e-5, atol=1e-4)
    for estimator in ("iwae", "sumo"):
        point = F.evaluate_checkpoint(jax.random.key(11), sampler, estimator, num_x=64, eval_samples=8)
        assert abs(point.gap) < 1e-4 and abs(point.own - point.true) < 1e-4 and point.true_se > 0
    with pytest.raises(ValueError, match="estimator"):
        F.evaluate_checkpoint(jax.random.key(11), sampler, "elbo")
    with pytest.raises(ValueError, match="equal parts"):
        F.train_tracked(jax.random.key(0), PARAMS, optax.adam(1e-3), 10, 3, "iwae")
    with pytest.raises(ValueError, match="x must be"):
        F.sumo_log_prob(jax.random.key(10), sampler, np.zeros(4))
