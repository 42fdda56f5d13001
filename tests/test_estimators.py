import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads
import optax
import pytest
from scipy.special import logsumexp as np_logsumexp

from lvm_tutorial import estimators as E
from lvm_tutorial import linear_gaussian as lg
from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.training import fit

MODEL = lg.make_linear_gaussian(jax.random.key(3), data_dim=4, latent_dim=2)
X = jnp.array([1.0, -0.5, 2.0, 0.3])
LOG_PX = lg.log_marginal(MODEL, X)
POST_MEAN, POST_LOG_SCALE = lg.posterior_diag(MODEL, X)
# A deliberately poor proposal: shifted and too wide, so the bounds have visible gaps.
Q_MEAN, Q_LOG_SCALE = POST_MEAN + 0.8, POST_LOG_SCALE + 0.5


def poor_log_weights(key, shape):
    flat = lg.log_weights(key, MODEL, X, Q_MEAN, Q_LOG_SCALE, math.prod(shape))
    return flat.reshape(shape)


# --- bounds -----------------------------------------------------------------------------

def test_iwae_bound_is_log_mean_exp():
    lw = np.random.default_rng(0).normal(size=(3, 10)) * 3
    np.testing.assert_allclose(E.iwae_bound(jnp.asarray(lw)), np_logsumexp(lw, -1) - np.log(10), rtol=1e-5)
    np.testing.assert_allclose(E.elbo(jnp.asarray(lw)), lw.mean(-1), rtol=1e-5)


def test_iwae_bounds_agree_with_iwae_bound_on_prefixes():
    lw = jnp.asarray(np.random.default_rng(1).normal(size=(2, 30)) * 2)
    bounds = E.iwae_bounds(lw)
    assert bounds.shape == lw.shape
    for k in (1, 2, 7, 30):
        np.testing.assert_allclose(bounds[:, k - 1], E.iwae_bound(lw[:, :k]), rtol=1e-5, atol=1e-5)


def test_elbo_gap_equals_kl(key):
    n = 200_000
    lw = poor_log_weights(key, (n,))
    post_mean, post_cov = lg.posterior(MODEL, X)
    kl = lg.kl_diag_to_full(Q_MEAN, Q_LOG_SCALE, post_mean, post_cov)
    gap = LOG_PX - E.elbo(lw)
    se = lw.std() / math.sqrt(n)
    assert abs(gap - kl) < 5 * se  # 5 SE: ~6e-7 false alarms
    assert kl > 20 * se            # the check has power: the gap is far from zero


def test_expected_iwae_increases_with_k_and_stays_below_log_px(key):
    reps = 20_000
    lw = poor_log_weights(key, (reps, 64))
    bounds = E.iwae_bounds(lw)                       # (reps, 64): IWAE_k on prefixes
    means = bounds.mean(0)
    ses = bounds.std(0) / math.sqrt(reps)
    ks = np.array([1, 2, 4, 8, 16, 32, 64]) - 1
    assert np.all(np.diff(np.asarray(means[ks])) > 0)       # differences are > 10 SE here
    assert np.all(np.asarray(means[ks] + 5 * ses[ks]) < LOG_PX)  # 5 SE below: ~3e-7 each
    # and a single sequence need not be monotone (the theorem is about expectations):
    per_draw = np.diff(np.asarray(bounds), axis=-1)
    assert (per_draw < 0).mean() > 0.1


def test_exact_posterior_makes_every_bound_exact(key):
    lw = lg.log_weights(key, MODEL, X, POST_MEAN, POST_LOG_SCALE, 50)
    np.testing.assert_allclose(lw, LOG_PX, atol=2e-4)
    np.testing.assert_allclose(E.iwae_bounds(lw), LOG_PX, atol=2e-4)
    np.testing.assert_allclose(E.elbo(lw), LOG_PX, atol=2e-4)


@pytest.mark.parametrize("block", [4, 8, 32])
def test_segment_cumlogsumexp_restarts_at_each_segment_for_any_block_and_spread(block):
    lengths = [5, 7, 44, 6, 11, 5]
    segment_ids = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    x = np.random.default_rng(1).normal(size=len(segment_ids)).astype(np.float32) * 3.0
    x[5:9] = -400.0          # a segment whose early entries sit 400 nats below its later ones
    want = np.concatenate([np.logaddexp.accumulate(x[segment_ids == e].astype(np.float64))
                           for e in range(len(lengths))])
    got = E.segment_cumlogsumexp(jnp.asarray(x), jnp.asarray(segment_ids), block)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # negative control: one running log-sum over the whole array, no restart at each segment
    assert np.max(np.abs(np.logaddexp.accumulate(x.astype(np.float64)) - want)) > 1.0


def test_iwae_bounds_differentiate_in_both_modes(key):
    """Reverse and forward mode through the prefix bounds: the gradient against jax's own
    cumlogsumexp, check_grads in both modes, and jax.hessian against a closed form."""
    x = jax.random.normal(key, (2, 13)) * 3
    weights = jnp.sin(jnp.arange(13.0))
    f = lambda x: jnp.sum(E.iwae_bounds(x) * weights[None])
    log_counts = jnp.log(jnp.arange(1.0, 14.0))[None]
    reference = lambda x: jnp.sum((jax.lax.cumlogsumexp(x, axis=1) - log_counts) * weights[None])
    np.testing.assert_allclose(jax.grad(f)(x), jax.grad(reference)(x), atol=1e-5)
    np.testing.assert_allclose(jax.jacfwd(f)(x), jax.grad(reference)(x), atol=1e-5)
    check_grads(jax.jit(f), (x,), order=1, modes=("fwd", "rev"), atol=5e-2, rtol=5e-2)
    # the Hessian of IWAE_K (last bound) is diag(s) - s s^T, s = softmax(log w)
    last = lambda lw: E.iwae_bounds(lw)[-1]
    s_ = jax.nn.softmax(x[0])
    np.testing.assert_allclose(jax.hessian(last)(x[0]), jnp.diag(s_) - jnp.outer(s_, s_), atol=1e-5)


def test_effective_sample_size():
    assert float(E.effective_sample_size(jnp.zeros(8))) == pytest.approx(8.0)
    assert float(E.effective_sample_size(jnp.array([0.0, -1e4, -1e4]))) == pytest.approx(1.0)


# --- the number of terms ------------------------------------------------------------------

def test_tail_survival_values():
    k = jnp.array([1, 2, 10, 79, 80, 81, 100])
    want = [1, 0.5, 0.1, 1 / 79, 1 / 80, 0.9 / 80, 0.9**20 / 80]
    np.testing.assert_allclose(E.tail_survival(k), want, rtol=1e-5)
    assert float(E.tail_survival(0)) == 1.0


def test_expected_num_terms_closed_form():
    direct = float(jnp.sum(E.tail_survival(jnp.arange(1, 3000))))
    assert E.expected_num_terms() == pytest.approx(direct, rel=1e-5)


def test_sample_num_terms_matches_tail_survival(key):
    n = 2_000_000
    k = np.asarray(E.sample_num_terms(key, (n,)))
    assert k.dtype == np.int32 and k.min() >= 1
    for j in (2, 3, 10, 50, 79, 80, 81, 90, 120):
        p = float(E.tail_survival(j))
        assert abs((k >= j).mean() - p) < 5 * math.sqrt(p * (1 - p) / n), j  # 5 SE: ~6e-7 each
    assert abs(k.mean() - E.expected_num_terms()) < 5 * k.std() / math.sqrt(n)
    # negative control: source 001's floor(u / (1 - u)), one too small here, fails the same check
    u = np.random.default_rng(0).random(n)
    wrong = np.floor(u / (1 - u))
    p = float(E.tail_survival(10))
    assert abs((wrong >= 10).mean() - p) > 5 * math.sqrt(p * (1 - p) / n)


def test_another_tail_is_threaded_everywhere(key):
    tail = E.Tail(10, 0.3)
    k = np.asarray(E.sample_num_terms(key, (400_000,), tail))
    for j in (2, 9, 10, 14):
        p = float(E.tail_survival(j, tail))
        assert abs((k >= j).mean() - p) < 5 * math.sqrt(p * (1 - p) / len(k)), j    # ~6e-7 each
    assert E.expected_num_terms(tail) == pytest.approx(sum(1 / i for i in range(1, 10)) + 1 / 3)
    assert E.max_num_terms(tail) < E.max_num_terms() and E.buffer_sizes(4, tail)[-1] == 4 + E.max_num_terms(tail)
    assert E.SUMO(4, tail).expected_samples() == pytest.approx(4 + E.expected_num_terms(tail))


def test_sampler_reaches_the_float32_weight_limit():
    # The smallest uniform the sampler can draw is 2**-129; that K is the largest it returns,
    # and it lies where 1/P(K >= K) is about to overflow float32: nothing representable is cut.
    k_max = E.max_num_terms()
    assert 800 < k_max < 1000
    assert np.isfinite(np.float32(np.exp(-float(E.log_tail_survival(k_max - 10)))))
    # a plain float32 uniform would stop near K = 196 (u >= 2**-24): the reason for 128 bits.
    assert 80 + math.floor((math.log(2**-24) + math.log(80)) / math.log(0.9)) < 200


# --- SUMO -----------------------------------------------------------------------------------

def offset_sumo(log_weights, num_terms, min_terms):
    """Source 001's estimator: the j-th correction divided by P(K >= m + j). Biased."""
    bounds = E.iwae_bounds(log_weights)
    j = jnp.arange(1, log_weights.shape[-1] - min_terms + 1)
    deltas = bounds[..., min_terms:] - bounds[..., min_terms - 1:-1]
    keep = j <= num_terms[..., None]
    w = 1.0 / E.tail_survival(jnp.where(keep, j + min_terms, 1))
    return bounds[..., min_terms - 1] + jnp.sum(jnp.where(keep, deltas * w, 0.0), -1)


def expectation_over_k(estimator, log_weights, min_terms):
    """E_K[estimator] by enumerating every K the sampler can return, with P(K = k)."""
    ks = jnp.arange(1, log_weights.shape[-1] - min_terms + 1)
    pmf = E.tail_survival(ks) - E.tail_survival(ks + 1)
    values = jax.vmap(lambda k: estimator(log_weights, k, min_terms))(ks)
    return jnp.sum(pmf * values), jnp.sum(pmf)


def settled_weights(seed, min_terms, head):
    """Random log-weights followed by copies of their running IWAE value, so that
    IWAE_n stops changing for n >= head: the series sums to IWAE_head exactly."""
    lw = np.random.default_rng(seed).normal(size=head) * 1.5
    limit = np_logsumexp(lw) - np.log(head)
    tail = np.full(min_terms + E.max_num_terms() - head, limit)
    return np.concatenate([lw, tail]), limit


@pytest.mark.parametrize("min_terms", [1, 4])
def test_sumo_is_unbiased_given_the_weights_and_offset_weights_are_caught(min_terms):
    with jax.enable_x64(True):
        for seed in range(3):
            lw, limit = settled_weights(seed, min_terms, head=min_terms + 40)
            lw = jnp.asarray(lw)
            mean, mass = expectation_over_k(E.sumo_from_log_weights, lw, min_terms)
            assert float(mass) == pytest.approx(1.0, abs=1e-12)
            assert float(mean) == pytest.approx(limit, abs=1e-9)
            # negative control: the source's offset weights miss the limit by far more
            biased, _ = expectation_over_k(offset_sumo, lw, min_terms)
            assert abs(float(biased) - limit) > 1e-3


def test_sumo_mean_over_draws_matches_log_px_while_iwae_is_biased(key):
    n, m, buffer = 40_000, 4, 200
    k_key, w_key = jax.random.split(key)
    num_terms = jnp.minimum(E.sample_num_terms(k_key, (n,)), buffer - m)  # P(K > 196) ~ 6e-8
    lw = jax.jit(poor_log_weights, static_argnums=1)(w_key, (n, buffer))
    sumo = jax.jit(E.sumo_from_log_weights, static_argnums=2)(lw, num_terms, m)
    se = float(sumo.std()) / math.sqrt(n)
    assert abs(float(sumo.mean()) - LOG_PX) < 5 * se          # 5 SE: ~6e-7 false alarms
    iwae_m = E.iwae_bound(lw[:, :m])
    assert float(LOG_PX - iwae_m.mean()) > 10 * float(iwae_m.std()) / math.sqrt(n)
    # (The offset weights' bias hides in this heavy-tailed noise: the enumeration test above
    # is the one that catches them.)


def test_sumo_per_example_num_terms(key):
    lw = np.asarray(jax.random.normal(key, (3, 50)))
    k = np.array([1, 7, 40])
    got = E.sumo_from_log_weights(jnp.asarray(lw), jnp.asarray(k), 3)
    for i in range(3):  # one example at a time, in plain numpy
        prefixes = np.where(np.tril(np.ones((50, 50))) > 0, lw[i], -np.inf)  # row k: first k+1
        bounds = np_logsumexp(prefixes, axis=1) - np.log(np.arange(1, 51))
        want = bounds[2] + sum((bounds[2 + j] - bounds[1 + j]) / float(E.tail_survival(j))
                               for j in range(1, k[i] + 1))
        np.testing.assert_allclose(got[i], want, rtol=1e-4)


def naive_masked_sumo(log_weights, num_terms, min_terms):
    """One jnp.where around an overflowing weight: the forward pass is fine, the gradient is NaN."""
    bounds = E.iwae_bounds(log_weights)
    j = jnp.arange(1, log_weights.shape[-1] - min_terms + 1)
    deltas = bounds[..., min_terms:] - bounds[..., min_terms - 1:-1]
    w = jnp.exp(-E.log_tail_survival(j))
    return bounds[..., min_terms - 1] + jnp.sum(jnp.where(j <= num_terms, deltas * w, 0.0), -1)


@pytest.mark.parametrize("num_terms,length", [(3, 5000), (40, 1000), (800, 804)])
def test_sumo_value_and_gradient_finite_in_float32(key, num_terms, length):
    lw = jax.random.normal(key, (length,))
    value, grad = jax.jit(jax.value_and_grad(E.sumo_from_log_weights), static_argnums=2)(
        lw, num_terms, 4)
    assert lw.dtype == jnp.float32
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if length > 1000:  # negative control: the naive mask lets the overflow poison the gradient
        bad = jax.jit(jax.grad(naive_masked_sumo), static_argnums=2)(lw, num_terms, 4)
        assert not np.all(np.isfinite(bad))


def test_sumo_bad_inputs():
    lw = jnp.zeros(10)
    with pytest.raises(ValueError, match="min_terms"):
        E.sumo_from_log_weights(lw, 2, 0)
    with pytest.raises(ValueError, match="min_terms \\+ num_terms"):
        E.sumo_from_log_weights(lw, 8, 4)
    with pytest.raises(ValueError, match="num_terms"):
        E.sumo_from_log_weights(lw, 0, 4)
    with pytest.raises(ValueError, match="min_terms"):
        E.sumo(jax.random.key(0), lambda k, n: jnp.zeros(n), 0)


def test_buffer_ladder_covers_every_possible_k():
    sizes = E.buffer_sizes(4)
    assert sizes[-1] == 4 + E.max_num_terms() and list(sizes) == sorted(sizes)


def sumo_loss(params, key, batch, min_terms=4):
    """-mean SUMO over a batch of 4 copies of X, q's mean and log-scale being ``params``."""
    q_mean, q_log_scale = params

    def log_weight_fn(k, n):
        keys = jax.random.split(k, 4)
        return jax.vmap(lambda kk: lg.log_weights(kk, MODEL, X, q_mean, q_log_scale, n))(keys)

    value, num_terms = E.sumo(key, log_weight_fn, min_terms, batch_shape=(4,))
    return -jnp.mean(value)


def test_fresh_k_every_step_compiles_a_bounded_number_of_times(key):
    with count_compilations() as log:
        state, info = fit(key, sumo_loss, (Q_MEAN, Q_LOG_SCALE), optax.adam(1e-2), 1000)
    # The bound: one program for the whole 1000-step scan (every buffer size lives in it, so
    # no K ever recompiles or is cut), plus the few small eager ops of `fit` (key splitting,
    # optimiser init): at most 6. A K passed as a static argument would compile ~65 times.
    assert log.count <= 6, log
    assert np.all(np.isfinite(info.loss))


def test_sumo_draws_and_is_unbiased_under_jit(key):
    fn = jax.jit(lambda k: E.sumo(k, lambda kk, n: poor_log_weights(kk, (4000, n)), 4,
                                  batch_shape=(4000,)))
    value, k = fn(key)
    assert value.shape == (4000,) and k.shape == (4000,)
    assert abs(float(value.mean()) - LOG_PX) < 6 * float(value.std()) / math.sqrt(4000)  # ~2e-9


def test_sumo_runs_eagerly_when_k_outgrows_the_smallest_buffer():
    """Eager `sumo` equals the jitted one, also for a K past the first buffer (key 3 draws 80,
    which the 20-long branch must not check); before K became a switch operand it raised."""
    weights_fn = lambda kk, n: poor_log_weights(kk, (1, n))
    key = jax.random.key(3)
    value, k = E.sumo(key, weights_fn, 4, batch_shape=(1,))
    assert int(k[0]) + 4 > E.buffer_sizes(4)[0]
    jitted, k_jit = jax.jit(lambda kk: E.sumo(kk, weights_fn, 4, batch_shape=(1,)))(key)
    assert int(k_jit[0]) == int(k[0])
    np.testing.assert_allclose(value, jitted, rtol=1e-6)


def test_everything_runs_under_jit_with_the_eager_values(key):
    lw = jax.random.normal(key, (2, 20))
    k = jnp.arange(1, 5)
    for fn, args in [(E.elbo, (lw,)), (E.iwae_bound, (lw,)), (E.iwae_bounds, (lw,)),
                     (E.effective_sample_size, (lw,)), (E.tail_survival, (k,)),
                     (E.log_tail_survival, (k,))]:
        np.testing.assert_allclose(jax.jit(fn)(*args), fn(*args), rtol=1e-6, atol=1e-6, err_msg=fn.__name__)
    np.testing.assert_array_equal(jax.jit(E.sample_num_terms, static_argnums=1)(key, (3,)),
                                  E.sample_num_terms(key, (3,)))
    np.testing.assert_allclose(jax.jit(E.sumo_from_log_weights, static_argnums=2)(lw, jnp.array([3, 9]), 4),
                               E.sumo_from_log_weights(lw, jnp.array([3, 9]), 4), rtol=1e-5, atol=1e-5)


def test_float64(key):
    with jax.enable_x64(True):
        lw = jax.random.normal(key, (2, 20), jnp.float64)
        assert E.iwae_bounds(lw).dtype == jnp.float64
        assert E.sumo_from_log_weights(lw, jnp.array([3, 9]), 4).dtype == jnp.float64
        assert E.sample_num_terms(key, (5,)).dtype == jnp.int32
