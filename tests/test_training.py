import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.training import fit


def squared_error(params, key, batch):
    """Mean squared distance from params to a batch of points, plus a little key-driven noise."""
    noise = 0.01 * jax.random.normal(key, params.shape)
    return jnp.mean(jnp.sum((batch - params - noise) ** 2, axis=-1))


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
