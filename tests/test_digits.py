"""The digits VAE/IWAE: training runs through fit, and the chunked IWAE estimate of log p(x)
is checked on a model whose log p(x) is known exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvm_tutorial import load_digits_binary
from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.digits import DigitsConfig, log_likelihood_estimate, train_digits
from lvm_tutorial.estimators import elbo
from lvm_tutorial.vae import VAEParams, vae_init, vae_log_weights

LATENT = 4
SHIFT = 0.5
NUM = 40          # test images used


def _oracle(key, data_dim=64):
    """A decoder that ignores z (zero first layer), and q(z | x) = N(SHIFT, I) for every x.

    Then w = p(x) p(z) / q(z), so E_q[w] = p(x) = prod_d Bernoulli(x_d; sigmoid(c_d)) exactly.
    """
    params = vae_init(key, data_dim, LATENT, (16,), "bernoulli")
    (w1, b1), (w2, b2) = params.decoder
    decoder = [(jnp.zeros_like(w1), b1 + 0.3), (w2, b2)]
    encoder = [(jnp.zeros_like(w), jnp.zeros_like(b)) for w, b in params.encoder]
    encoder[-1] = (encoder[-1][0], jnp.concatenate([jnp.full(LATENT, SHIFT), jnp.zeros(LATENT)]))
    logits = jnp.tanh(b1 + 0.3) @ w2 + b2
    return VAEParams(encoder, decoder), logits


def _exact_log_prob(logits, x):
    return -jnp.sum(jnp.logaddexp(0.0, jnp.where(x > 0.5, -logits, logits)), axis=-1)


def test_estimate_matches_exact_log_prob(key):
    _, test = load_digits_binary()
    data = test[:NUM]
    params, logits = _oracle(key)
    exact = _exact_log_prob(logits, data)
    # called inside another jit, which is also the "runs under jit" check
    estimate = jax.jit(lambda k, p, x: log_likelihood_estimate(k, p, x, 1000, 250))
    est = estimate(jax.random.key(1), params, data)
    assert est.shape == (NUM,)
    # log w - log p(x) = log p(z) - log q(z) is the same for every x; its weights have
    # Var(w / p(x)) = exp(LATENT * SHIFT**2) - 1 = e - 1, so IWAE_1000's bias is about -9e-4
    # and the spread of one estimate about sqrt((e - 1) / 1000) = 0.04.
    err = np.asarray(est - exact)
    assert abs(err.mean()) < 5 * 0.04 / np.sqrt(NUM) + 2e-3  # 5 SE: ~6e-7 false alarms
    # negative control: the ELBO (averaging log-weights) is lower by KL(q || p) = LATENT * SHIFT**2 / 2
    log_w = jax.jit(jax.vmap(vae_log_weights, (0, None, 0, None, None)), static_argnums=(3, 4))(
        jax.random.split(jax.random.key(2), NUM), params, data, 1000, "bernoulli")
    gap = float(jnp.mean(exact - elbo(log_w)))
    np.testing.assert_allclose(gap, LATENT * SHIFT ** 2 / 2, rtol=0.05)
    assert gap > 20 * abs(err.mean())


def test_one_chunk_agrees_too(key):
    _, test = load_digits_binary()
    params, logits = _oracle(key)
    exact = _exact_log_prob(logits, test[:NUM])
    est = log_likelihood_estimate(jax.random.key(3), params, test[:NUM], 1000, 1000)
    assert abs(float(jnp.mean(est - exact))) < 5 * 0.04 / np.sqrt(NUM) + 2e-3  # 5 SE: ~6e-7


def test_bad_arguments_are_named(key):
    train, test = load_digits_binary()
    params, _ = _oracle(key)
    with pytest.raises(ValueError, match="chunk_size"):
        log_likelihood_estimate(key, params, test[:5], 1000, 300)
    with pytest.raises(ValueError, match="num_samples"):
        train_digits(key, train, 0, 5)
    with pytest.raises(ValueError, match="train_data"):
        train_digits(key, train[0], 1, 5)


def test_training_improves_the_bound_and_is_reproducible(key):
    train, _ = load_digits_binary()
    config = DigitsConfig(latent_dim=4, hidden=(32,), batch_size=32)
    params, info = train_digits(key, train, 5, 100, config)
    assert info.loss.shape == (100,) and bool(jnp.all(jnp.isfinite(info.loss)))
    assert float(info.loss[-20:].mean()) < float(info.loss[:20].mean()) - 5.0
    with count_compilations() as log:           # the same K and settings: no new compile
        again, _ = train_digits(key, train, 5, 100, config)
    np.testing.assert_array_equal(params.decoder[0][0], again.decoder[0][0])
    assert log.count <= 3, log.count            # a few small eager ops (splits, init) at most


def test_the_learning_rate_decays_to_zero_at_the_last_step():
    """Adam's first update is the full rate; the update after the last step is exactly zero, so
    training comes to rest (a rounding-level change of the inputs cannot keep it moving)."""
    from lvm_tutorial.digits import _optimizer
    rate, steps = 3e-3, 50
    optimizer = _optimizer(DigitsConfig(learning_rate=rate), steps)
    params, grads = jnp.zeros(3), jnp.ones(3)
    state = optimizer.init(params)
    sizes = []
    for _ in range(steps + 1):
        updates, state = optimizer.update(grads, state, params)
        sizes.append(float(jnp.max(jnp.abs(updates))))
    assert sizes[0] == pytest.approx(rate, rel=1e-4)
    assert sizes[steps // 2] == pytest.approx(rate / 2, rel=1e-3)   # cosine: half way, half rate
    assert 0.0 < sizes[steps - 1] < 1e-2 * rate and sizes[steps] == 0.0
