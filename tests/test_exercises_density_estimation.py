"""Chapter 8's checker: the reference passes, each known mistake gets its hint."""
import jax
import jax.numpy as jnp
import optax

from lvm_tutorial.exercises.density_estimation import check_clip_encoder
from lvm_tutorial.vae import VAEParams


def _stub(*args):
    raise NotImplementedError("your code here")


def good(grads, max_norm):
    norm = optax.tree.norm(grads.encoder)
    factor = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))
    return VAEParams(jax.tree.map(lambda g: factor * g, grads.encoder), grads.decoder)


def test_clip_encoder_checker_accepts_a_correct_clip():
    feedback = check_clip_encoder(good)
    assert feedback.passed and str(feedback).startswith("Correct"), feedback


def test_clip_encoder_checker_names_each_known_mistake():
    def both(grads, c):
        clip = optax.clip_by_global_norm(c)
        return clip.update(grads, clip.init(grads))[0]

    def per_leaf(grads, c):
        return VAEParams(jax.tree.map(
            lambda g: g * jnp.minimum(1.0, c / jnp.maximum(jnp.linalg.norm(g), 1e-30)),
            grads.encoder), grads.decoder)

    def normalise_first(grads, c):                  # right, except 0 / 0 at a zero gradient
        norm = optax.tree.norm(grads.encoder)
        return VAEParams(jax.tree.map(lambda g: g / norm * jnp.minimum(norm, c), grads.encoder),
                         grads.decoder)

    def always_safe(grads, c):
        norm = jnp.maximum(optax.tree.norm(grads.encoder), 1e-30)
        return VAEParams(jax.tree.map(lambda g: g * c / norm, grads.encoder), grads.decoder)

    def decoder(grads, c):
        swapped = good(VAEParams(grads.decoder, grads.encoder), c)
        return VAEParams(swapped.decoder, swapped.encoder)

    wrong = {
        "both networks": both,
        "each array": per_leaf,
        "not finite": normalise_first,
        "even when it was smaller": always_safe,
        "other way round": decoder,
        "nothing changed": lambda grads, c: grads,
        "VAEParams": lambda grads, c: grads.encoder,
    }
    for hint, fn in wrong.items():
        feedback = check_clip_encoder(fn)
        assert not feedback.passed and hint in feedback.message, (hint, feedback)
    stub = check_clip_encoder(_stub)
    assert not stub.passed and "NotImplementedError" in stub.message
