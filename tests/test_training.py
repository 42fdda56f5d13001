import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.training import fit, init_state, run_steps, run_steps_vmapped, static_value


def squared_error(params, key, batch):
    """Mean squared distance from params to a batch of points, plus a little key-driven noise."""
    noise = 0.01 * jax.random.normal(key, params.shape)
    return jnp.mean(jnp.sum((batch - params[None] - noise[None]) ** 2, axis=-1))


DATA = jnp.asarray(np.random.default_rng(0).normal(size=(200, 2)) + [3.0, -1.0])


def test_fit_full_batch_converges_to_the_mean(key):
    state, info = fit(key, squared_error, jnp.zeros(2), optax.adam(0.1), 300, data=DATA)
    np.testing.assert_allclose(state.params, DATA.mean(0), atol=0.05)
    assert info.loss.shape == (300,) and info.loss[-1] < info.loss[0]


def test_fit_minibatches_and_continues_from_a_state(key):
    state, _ = fit(key, squared_error, jnp.zeros(2), optax.adam(0.1), 200, data=DATA, batch_size=20)
    state, info = fit(jax.random.key(1), squared_error, None, optax.adam(0.1), 200, data=DATA,
                      batch_size=20, state=state)
    np.testing.assert_allclose(state.params, DATA.mean(0), atol=0.15)


def test_new_data_of_the_same_shape_does_not_recompile(key):
    opt = optax.adam(0.1)
    fit(key, squared_error, jnp.zeros(2), opt, 50, data=DATA)
    other_key, start, shifted = jax.random.key(5), jnp.ones(2), DATA + 1.0  # eager ops compile too
    with count_compilations() as log:
        fit(other_key, squared_error, start, opt, 50, data=shifted)
    assert log.count == 0


def test_bad_inputs(key):
    with pytest.raises(ValueError, match="num_steps"):
        fit(key, squared_error, jnp.zeros(2), optax.adam(0.1), 0, data=DATA)
    with pytest.raises(ValueError, match="batch_size"):
        fit(key, squared_error, jnp.zeros(2), optax.adam(0.1), 5, data=DATA, batch_size=500)


def scaled_error(params, key, batch, scale):
    return scale * squared_error(params, key, batch)


def test_equal_losses_and_optimisers_compile_once_and_unequal_ones_do_not_share(key):
    from functools import partial
    fit(key, partial(scaled_error, scale=2.0), jnp.zeros(2), optax.adam(optax.cosine_decay_schedule(0.1, 50)),
        50, data=DATA)
    start = jnp.ones(2)
    with count_compilations() as equal:          # new objects, equal values
        fit(key, partial(scaled_error, scale=2.0), start, optax.adam(optax.cosine_decay_schedule(0.1, 50)),
            50, data=DATA)
    with count_compilations() as other_loss:     # negative controls: another value, another program
        fit(key, partial(scaled_error, scale=3.0), start, optax.adam(optax.cosine_decay_schedule(0.1, 50)),
            50, data=DATA)
    with count_compilations() as other_rate:
        fit(key, partial(scaled_error, scale=2.0), start, optax.adam(optax.cosine_decay_schedule(0.2, 50)),
            50, data=DATA)
    assert equal.count == 0 and other_loss.count >= 1 and other_rate.count >= 1


def test_static_value_compares_what_a_callable_computes():
    same = [static_value(optax.adam(0.1)), static_value(optax.adam(0.1))]
    assert same[0] == same[1] and hash(same[0]) == hash(same[1])
    assert static_value(optax.adam(0.1)) != static_value(optax.sgd(0.1))
    captured = jnp.arange(3.0)
    closure = lambda value: (lambda x: x + value)
    assert static_value(closure(captured)) == static_value(closure(jnp.arange(3.0)))
    assert static_value(closure(captured)) != static_value(closure(jnp.arange(3.0) + 1))


def test_micro_batches_sum_their_gradients_into_one_step(key):
    """Items with ``apply`` False add their gradients to the next step: two half-batches with
    apply (False, True) give the step of the whole batch; apply (True, True) gives two steps."""
    grad_fn = lambda params, item, context: (jax.grad(squared_error)(params, key, item) / 2, 0.0)
    halves = DATA[:100].reshape(2, 50, 2)
    start = init_state(jnp.zeros(2), optax.sgd(0.1))
    summed, _ = run_steps(grad_fn, optax.sgd(0.1), start, halves, jnp.array([False, True]))
    whole, _ = run_steps(lambda p, item, c: (jax.grad(squared_error)(p, key, item), 0.0), optax.sgd(0.1),
                         start, DATA[None, :100])
    np.testing.assert_allclose(summed.params, whole.params, rtol=1e-5)
    two_steps, _ = run_steps(grad_fn, optax.sgd(0.1), start, halves, jnp.array([True, True]))
    assert np.max(np.abs(two_steps.params - whole.params)) > 1e-3      # negative control


def test_vmapped_runs_equal_separate_runs(key):
    """run_steps_vmapped over three runs (own data, own starting point, a shared scale in the
    context) equals run_steps on each; negative control: swapping two runs' data is caught."""
    grad_fn = lambda params, item, scale: (scale * jax.grad(squared_error)(params, key, item), 0.0)
    data = DATA[:120].reshape(3, 4, 10, 2)                      # 3 runs, 4 steps of 10 points
    # plain SGD: its step scales with the gradient (Adam's would hide a gradient counted twice)
    starts = jax.vmap(lambda p: init_state(p, optax.sgd(0.1)))(jnp.arange(6.0).reshape(3, 2))
    with count_compilations() as compiles:
        many, _ = run_steps_vmapped(grad_fn, optax.sgd(0.1), starts, data, jnp.ones((3, 4), bool),
                                    0.5, None)
    for run in range(3):
        one, _ = run_steps(grad_fn, optax.sgd(0.1), jax.tree.map(lambda a: a[run], starts), data[run],
                           jnp.ones(4, bool), 0.5)
        np.testing.assert_allclose(many.params[run], one.params, rtol=1e-6)
    other = data[::-1]
    with count_compilations() as again:                         # other data, equal optimiser
        swapped, _ = run_steps_vmapped(grad_fn, optax.sgd(0.1), starts, other,
                                       jnp.ones((3, 4), bool), 0.5, None)
    assert compiles.count >= 1 and again.count == 0
    assert np.max(np.abs(swapped.params[0] - many.params[0])) > 1e-3
