"""The MLPs: values against numpy, and every autodiff mode (forward mode included) through them."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from lvm_tutorial.networks import dense, gaussian_head, mlp_apply, mlp_init
from lvm_tutorial.vae import vae_init, vae_log_weights

PARAMS = mlp_init(jax.random.key(0), (3, 16, 4))


def numpy_mlp(params, x):
    (w1, b1), (w2, b2) = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in params]
    return np.tanh(x @ w1 + b1) @ w2 + b2


def test_values_match_numpy_for_batched_and_vmapped_inputs():
    x = np.asarray(jax.random.normal(jax.random.key(1), (5, 7, 3)))          # two leading axes
    np.testing.assert_allclose(mlp_apply(PARAMS, jnp.asarray(x)), numpy_mlp(PARAMS, x), rtol=1e-5, atol=1e-5)
    vmapped = jax.vmap(lambda row: mlp_apply(PARAMS, row))(jnp.asarray(x))
    np.testing.assert_allclose(vmapped, numpy_mlp(PARAMS, x), rtol=1e-5, atol=1e-5)
    mean, log_scale = gaussian_head(PARAMS, jnp.asarray(x))
    np.testing.assert_allclose(jnp.concatenate([mean, log_scale], -1), numpy_mlp(PARAMS, x), rtol=1e-5, atol=1e-5)
    assert dense(jnp.asarray(x), *PARAMS[0]).shape == (5, 7, 16)
    # negative control: a network without the hidden activation is told apart
    assert np.max(np.abs(numpy_mlp(PARAMS, x) - (x @ np.asarray(PARAMS[0][0]) + np.asarray(PARAMS[0][1]))
                         @ np.asarray(PARAMS[1][0]))) > 1e-2


def test_forward_and_reverse_mode_agree_through_the_networks():
    x = jax.random.normal(jax.random.key(2), (3,))
    f = lambda x: mlp_apply(PARAMS, x)
    np.testing.assert_allclose(jax.jacfwd(f)(x), jax.jacrev(f)(x), rtol=1e-5, atol=1e-6)
    tangent = jnp.array([1.0, -2.0, 0.5])
    _, jvp = jax.jvp(f, (x,), (tangent,))
    np.testing.assert_allclose(jvp, jax.jacrev(f)(x) @ tangent, rtol=1e-5, atol=1e-6)
    check_grads(lambda p: gaussian_head(p, x), (PARAMS,), order=2, modes=("fwd", "rev"),
                              atol=5e-2, rtol=5e-2)
    # the importance log-weights of the VAE in forward mode, and their Hessian in the data
    params = vae_init(jax.random.key(3), 3, 2, (8,))
    log_w = lambda x: jnp.sum(vae_log_weights(jax.random.key(4), params, x, 5))
    hessian = jax.hessian(log_w)(x)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jax.jacfwd(log_w)(x), jax.grad(log_w)(x), rtol=1e-5, atol=1e-5)
