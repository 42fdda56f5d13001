"""Packed buffers: the plan places every example once, and each example's SUMO or IWAE from its
run of slots equals the plain estimators on a padded grid, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvm_tutorial.estimators import IWAE, SUMO, Tail, iwae_bound, log_tail_survival, sumo_from_log_weights
from lvm_tutorial.packed import pack_microbatches, packed_estimates

M = 4


def layout(lengths, size):
    plan = pack_microbatches(np.asarray(lengths)[None], size)
    assert len(plan.step) == 1
    return jnp.asarray(plan.segment_ids[0]), jnp.asarray(plan.positions[0])


def to_grid(flat, segment_ids, lengths):
    """The flat buffer's examples as rows of a padded (E, max length) grid."""
    flat, segment_ids = np.asarray(flat), np.asarray(segment_ids)
    grid = np.zeros((len(lengths), max(lengths)), np.float32)
    for e in range(len(lengths)):
        row = flat[segment_ids == e]
        grid[e, :len(row)] = row
    return jnp.asarray(grid)


def offset_weights_sumo(log_weights, segment_ids, positions, num_segments, estimator):
    """Known-wrong variant (source 001): the j-th correction divided by P(K >= m + j)."""
    shifted = SUMO(estimator.min_terms, Tail(estimator.tail.alpha - estimator.min_terms, estimator.tail.b))
    return packed_estimates(log_weights, segment_ids, positions, num_segments, shifted)


@pytest.mark.parametrize("tail", [Tail(), Tail(20, 0.1)])
def test_sumo_agrees_with_sumo_from_log_weights(tail):
    num_terms = [1, 3, 2, 7, 1, 1, 150, 2, 1, 12]
    lengths = [M + k for k in num_terms]
    segment_ids, positions = layout(lengths, 256)
    coef = jnp.arange(1.0, 11.0)
    packed = lambda lw: packed_estimates(lw, segment_ids, positions, len(lengths), SUMO(M, tail))
    flat = jax.jit(jax.value_and_grad(lambda lw: jnp.sum(packed(lw) * coef)))
    grid = jax.jit(jax.value_and_grad(
        lambda g: jnp.sum(sumo_from_log_weights(g, jnp.asarray(num_terms), M, tail=tail) * coef)))
    log_w = jnp.asarray(np.random.default_rng(0).normal(size=256).astype(np.float32)) * 3.0
    # the second case: one example spans 400 nats, which takes the exact running-max branch
    for lw in (log_w, log_w.at[:4].set(-400.0)):
        want = sumo_from_log_weights(to_grid(lw, segment_ids, lengths), jnp.asarray(num_terms), M, tail=tail)
        np.testing.assert_allclose(jax.jit(packed)(lw), want, rtol=1e-5, atol=2e-4)
        (v_flat, g_flat), (v_grid, g_grid) = flat(lw), grid(to_grid(lw, segment_ids, lengths))
        np.testing.assert_allclose(v_flat, v_grid, rtol=1e-5)
        np.testing.assert_allclose(to_grid(g_flat, segment_ids, lengths), g_grid, rtol=1e-4, atol=1e-4)
        assert np.all(np.isfinite(g_flat))
    # negative control: source 001's offset weights are caught
    wrong = offset_weights_sumo(log_w, segment_ids, positions, len(lengths), SUMO(M, tail))
    assert np.max(np.abs(np.asarray(wrong) - np.asarray(packed(log_w)))) > 0.1


def test_iwae_agrees_with_iwae_bound_and_ignores_padding():
    lengths = [9] * 7
    segment_ids, positions = layout(lengths, 70)                     # 7 empty slots at the end
    log_w = jnp.asarray(np.random.default_rng(2).normal(size=70).astype(np.float32)) * 2.0
    got = packed_estimates(log_w, segment_ids, positions, 7, IWAE(9))
    np.testing.assert_allclose(got, iwae_bound(log_w[:63].reshape(7, 9)), rtol=1e-5, atol=1e-5)
    # padding slots change nothing; a wrong sample count is caught (negative control)
    np.testing.assert_allclose(packed_estimates(log_w.at[63:].set(50.0), segment_ids, positions, 7, IWAE(9)),
                               got, rtol=1e-6)
    assert np.max(np.abs(packed_estimates(log_w, segment_ids, positions, 7, IWAE(8)) - got)) > 0.01


def test_log_tail_survival_and_the_weights_are_the_tails():
    j = jnp.arange(1, 200)
    np.testing.assert_allclose(jnp.exp(log_tail_survival(j, Tail(10, 0.3))),
                               np.where(j < 10, 1.0 / j, 0.1 * 0.7 ** (j - 10.0)), rtol=1e-4)   # float32


def test_rejects_bad_arguments():
    segment_ids, positions = layout([M + 1, M + 2], 16)
    with pytest.raises(ValueError, match="min_terms"):
        packed_estimates(jnp.zeros(16), segment_ids, positions, 2, SUMO(0))
    with pytest.raises(ValueError, match="1-D"):
        packed_estimates(jnp.zeros((2, 8)), segment_ids, positions, 2, SUMO(M))


def test_pack_microbatches_places_every_example_once():
    num_terms = np.array([[1, 2, 3, 1], [60, 1, 70, 2], [1, 1, 1, 1]])
    plan = pack_microbatches(M + num_terms, 80)
    assert list(plan.step) == [0, 1, 1, 2]                  # step 1 needs two buffers
    assert list(plan.last) == [True, False, True, True]
    for t, s in enumerate(plan.step):
        seats = np.flatnonzero(plan.example_weight[t])
        lengths = np.bincount(plan.segment_ids[t][plan.segment_ids[t] < 4], minlength=4)[seats]
        assert np.all(plan.positions[t][plan.segment_ids[t] == seats[-1]] == np.arange(lengths[-1]))
        assert lengths.sum() <= 80
        filled = plan.segment_ids[t] < 4                     # slots filled from the front
        assert not np.any(filled[np.argmin(filled):]) or filled.all()
    assert np.isclose(plan.example_weight.sum(), 3.0)       # each example weighs 1/B once
    assert np.bincount(plan.segment_ids[1], minlength=5)[:2].tolist() == [64, 5]
    assert np.bincount(plan.segment_ids[2], minlength=5)[:2].tolist() == [74, 6]
    with pytest.raises(ValueError, match="buffer_size"):
        pack_microbatches(M + num_terms, 70)
    with pytest.raises(ValueError, match="steps, batch"):
        pack_microbatches(np.ones(3, int), 80)
    with pytest.raises(ValueError, match="at least one slot"):
        pack_microbatches(np.zeros((1, 2), int), 80)
