"""Chapter 8's pipeline on a tiny configuration: MNIST through a faked fetch, the three
trainers (VAE, IWAE, SUMO) through ``fit_sumo``, and the IWAE-K evaluation, which must be one
compiled function for every model and agree with the exact log-likelihood of the model the
trainer trained (a 1-d latent, integrated on a grid)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp

from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.data import load_mnist_binary
from lvm_tutorial.digits import log_likelihood_estimate
from lvm_tutorial.estimators import IWAE, SUMO
from lvm_tutorial.sumo_training import fit_sumo
from lvm_tutorial.vae import VAEParams, latent_model, vae_init

DIM, LATENT, NUM_TEST = 6, 1, 10
MODEL = latent_model("bernoulli")


def fake_pixels(num=50, dim=DIM):
    """A stand-in for OpenML's MNIST: integer pixels in [0, 255], test rows last."""
    return np.random.default_rng(0).integers(0, 256, size=(num, dim))


def test_load_mnist_binary_binarises_splits_and_caches(tmp_path):
    pixels = fake_pixels()
    pixels[0, :3] = (127, 128, 255)
    calls = []

    def fetch():
        calls.append(1)
        return pixels

    cache = tmp_path / "mnist.npz"
    train, test = load_mnist_binary(cache=cache, fetch=fetch, num_test=NUM_TEST)
    assert train.shape == (40, DIM) and test.shape == (NUM_TEST, DIM)
    assert train.dtype == jnp.float32 and calls == [1]
    np.testing.assert_array_equal(train[0, :3], [0.0, 1.0, 1.0])      # threshold at 128
    np.testing.assert_array_equal(test, (pixels[-NUM_TEST:] >= 128).astype(np.float32))

    def no_fetch():
        raise AssertionError("the cache should have been read")

    again = load_mnist_binary(cache=cache, fetch=no_fetch, num_test=NUM_TEST)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], test)
    with pytest.raises(ValueError):
        load_mnist_binary(fetch=lambda: pixels[:5], num_test=NUM_TEST)


def chapter_optimizer(num_steps, clip_encoder=None, clip_decoder=None):
    """The chapter's optimiser: optional masked global-norm clipping, then Adam (cosine)."""
    parts = []
    for limit, mask in ((clip_encoder, VAEParams(True, False)),
                        (clip_decoder, VAEParams(False, True))):
        if limit is not None:
            parts.append(optax.masked(optax.clip_by_global_norm(limit), mask))
    return optax.chain(*parts, optax.adam(optax.cosine_decay_schedule(3e-3, num_steps)))


@pytest.fixture(scope="module")
def trained():
    """The three trainers of the chapter, on the faked MNIST, same init and minibatches."""
    train, test = load_mnist_binary(fetch=fake_pixels, num_test=NUM_TEST)
    init = vae_init(jax.random.key(1), DIM, LATENT, (8,), "bernoulli")
    out = {}
    for name, estimator, optimizer in (
            ("VAE", IWAE(1), chapter_optimizer(30)),
            ("IWAE", IWAE(5), chapter_optimizer(30)),
            ("SUMO", SUMO(2), chapter_optimizer(30, 100.0, 10.0))):
        state, info = fit_sumo(jax.random.key(2), MODEL, init, optimizer, 30,
                               estimator=estimator, data=train, batch_size=8)
        assert np.all(np.isfinite(info.loss)) and info.loss.shape == (30,)
        assert (info.num_terms is None) == isinstance(estimator, IWAE)
        out[name] = state.params
    return out, test


def exact_log_prob(log_joint_fn, params, x):
    r"""$\log \int p_\theta(x, z)\,dz$ for a 1-d latent by a Riemann sum on [-10, 10]."""
    z = jnp.linspace(-10.0, 10.0, 20001)[:, None]
    one = lambda row: log_joint_fn(params.decoder, jnp.broadcast_to(row, (z.shape[0], DIM)), z)
    return np.asarray(logsumexp(jax.vmap(one)(x), axis=1) + jnp.log(z[1, 0] - z[0, 0]))


def matches_exact(estimates, exact):
    """``estimates`` (repeats, N) of log p(x_n) against ``exact`` (N,): every image within 0.05
    nats (about 6 of its SEs at K = 2000 here) and the mean error within 5 pooled SEs (a false
    alarm about once in 10^6 for a Gaussian mean; IWAE's own bias, O(1/K), is far smaller)."""
    error = estimates.mean(0) - exact
    se = estimates.std(0, ddof=1) / np.sqrt(estimates.shape[0])
    pooled = np.sqrt(np.sum(se ** 2)) / len(exact)
    return bool(np.all(np.abs(error) < 0.05) and abs(error.mean()) < 5 * pooled)


def test_every_model_is_evaluated_by_one_compiled_function(trained):
    models, test = trained
    keys = [jax.random.key(10), jax.random.key(11)]
    first = log_likelihood_estimate(keys[0], models["IWAE"], test, 200, 50)
    with count_compilations() as log:
        values = {name: np.asarray(log_likelihood_estimate(keys[1], params, test, 200, 50))
                  for name, params in models.items()}
    assert log.count == 0, "a trained model's evaluation compiled a program of its own"
    assert first.shape == (NUM_TEST,)
    assert all(v.shape == (NUM_TEST,) and np.all(np.isfinite(v)) for v in values.values())
    assert np.all(np.asarray(first) < 0.0)          # log-probabilities of binary images


def test_the_evaluation_is_the_log_likelihood_of_the_model_the_trainer_trained(trained):
    """IWAE_2000, as the chapter evaluates (in chunks), against the exact log p(x) of the
    trainer's own model (``latent_model``'s log-joint), for the SUMO- and the IWAE-trained
    parameters; negative controls: the ELBO (K = 1), and a log-joint without the prior."""
    models, test = trained
    x = test[:6]

    def without_prior(decoder, x, z):
        return MODEL.log_joint_fn(decoder, x, z) + 0.5 * jnp.sum(z * z, -1) \
            + 0.5 * jnp.log(2 * jnp.pi)

    for name in ("SUMO", "IWAE"):
        params = models[name]
        exact = exact_log_prob(MODEL.log_joint_fn, params, x)
        estimates = np.stack([np.asarray(log_likelihood_estimate(
            jax.random.key(r), params, x, 2000, 500)) for r in range(8)])
        assert matches_exact(estimates, exact), name
        elbo = np.stack([np.asarray(log_likelihood_estimate(jax.random.key(r), params, x, 1, 1))
                         for r in range(8)])
        assert not matches_exact(elbo, exact), name
        assert not matches_exact(estimates, exact_log_prob(without_prior, params, x)), name
