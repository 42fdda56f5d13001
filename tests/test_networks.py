import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvm_tutorial.networks import dense, matmul, mlp_apply, mlp_init


@pytest.mark.parametrize("shapes", [((256, 8), (8, 128)), ((256, 128), (128, 4)), ((7, 3), (3, 5))])
def test_matmul_gradient_matches_autodiff_of_the_plain_product(shapes):
    a_shape, b_shape = shapes                # copies a^T or the cotangent, whichever is smaller
    ka, kb, kc = jax.random.split(jax.random.key(2), 3)
    a, b = jax.random.normal(ka, a_shape), jax.random.normal(kb, b_shape)
    c = jax.random.normal(kc, (a_shape[0], b_shape[1]))
    got = jax.grad(lambda a, b: jnp.sum(jnp.tanh(matmul(a, b)) * c), (0, 1))(a, b)
    want = jax.grad(lambda a, b: jnp.sum(jnp.tanh(a @ b) * c), (0, 1))(a, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(matmul(a, b), a @ b, rtol=1e-6)


def test_mlp_value_and_gradient_match_plain_layers_for_batched_and_vmapped_inputs():
    params = mlp_init(jax.random.key(0), (3, 16, 4))
    x = jax.random.normal(jax.random.key(1), (5, 7, 3))          # two leading axes

    def plain(params, x):
        (w1, b1), (w2, b2) = params
        return jnp.tanh(x @ w1 + b1) @ w2 + b2

    np.testing.assert_allclose(mlp_apply(params, x), plain(params, x), rtol=1e-5, atol=1e-6)
    loss = lambda f: lambda p: jnp.sum(jnp.sin(f(p, x)))
    vmapped = lambda p, x: jax.vmap(lambda row: mlp_apply(p, row))(x)       # as the VAE's log-weights
    for f in (mlp_apply, vmapped):
        got, want = jax.grad(loss(f))(params), jax.grad(loss(plain))(params)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert dense(x, *params[0]).shape == (5, 7, 16)
