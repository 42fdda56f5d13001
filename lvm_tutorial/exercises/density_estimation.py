"""Checkers for chapter 8 (SUMO for density estimation).

- :func:`check_clip_encoder`: rescale the encoder's gradient to a global norm of at most $c$,
  $g_\\phi \\leftarrow g_\\phi \\min(1, c / \\lVert g_\\phi \\rVert)$, and leave the decoder's as it is.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from ..vae import VAEParams, vae_init
from ._core import Feedback, compare, match_suspect

__all__ = ["check_clip_encoder"]


def reference_clip_encoder(grads: VAEParams, max_norm: float) -> VAEParams:
    """``optax.clip_by_global_norm`` on the encoder's leaves only (``optax.masked``)."""
    clip = optax.masked(optax.clip_by_global_norm(max_norm), VAEParams(True, False))
    updates, _ = clip.update(grads, clip.init(grads))
    return updates


def _clip_cases():
    """Gradients shaped like chapter 8's networks (64 -> 16 -> 2x3, 3 -> 16 -> 64): the
    encoder's norm far above the limit, just below it, and exactly zero."""
    shapes = vae_init(jax.random.key(0), 64, 3, (16,), "bernoulli")
    leaves, tree = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(8), len(leaves))
    noise = jax.tree.unflatten(tree, [jax.random.normal(k, leaf.shape)
                                      for k, leaf in zip(keys, leaves)])
    scaled = VAEParams(jax.tree.map(lambda g: 40.0 * g, noise.encoder), noise.decoder)
    norm = float(optax.tree.norm(noise.encoder))
    zero = VAEParams(jax.tree.map(jnp.zeros_like, noise.encoder), noise.decoder)
    return [(scaled, 10.0), (noise, 1.01 * norm), (zero, 1.0)]


def _flat(grads) -> np.ndarray:
    return np.asarray(ravel_pytree(grads)[0])


def _suspects(args):
    grads, max_norm = args
    both = optax.clip_by_global_norm(max_norm)
    per_leaf = jax.tree.map(
        lambda g: g * jnp.minimum(1.0, max_norm / jnp.maximum(jnp.linalg.norm(g), 1e-30)),
        grads.encoder)
    norm = optax.tree.norm(grads.encoder)
    always = jax.tree.map(lambda g: g * max_norm / jnp.maximum(norm, 1e-30), grads.encoder)
    wrong_net = optax.masked(optax.clip_by_global_norm(max_norm), VAEParams(False, True))
    return [
        (_flat(both.update(grads, both.init(grads))[0]),
         "you clipped the norm of both networks' gradients together; the decoder's gradient "
         "must stay as it is (clipping it would bias the decoder's update)."),
        (_flat(VAEParams(per_leaf, grads.decoder)),
         "you clipped each array of the encoder on its own; clip the global norm, "
         "sqrt(sum of squares over all of the encoder's arrays), with one factor for all."),
        (_flat(VAEParams(always, grads.decoder)),
         "you rescaled the encoder's gradient to norm max_norm even when it was smaller; "
         "the factor is min(1, max_norm / norm)."),
        (_flat(wrong_net.update(grads, wrong_net.init(grads))[0]),
         "you clipped the decoder's gradient and left the encoder's; it is the other way round."),
        (_flat(grads), "nothing changed: the encoder's gradient above max_norm was not clipped."),
    ]


def check_clip_encoder(clip_fn) -> Feedback:
    r"""``clip_fn(grads, max_norm)`` takes a :class:`~lvm_tutorial.vae.VAEParams` of gradients
    and returns one in which the encoder's gradient has global norm at most ``max_norm``
    (multiplied by $\min(1, c / \lVert g_\phi \rVert)$) and the decoder's is unchanged."""
    def candidate(grads, max_norm):
        out = clip_fn(grads, max_norm)
        if jax.tree.structure(out) != jax.tree.structure(grads):
            raise TypeError("return a VAEParams(encoder, decoder) shaped like the gradients")
        return _flat(out)

    def reference(grads, max_norm):
        return _flat(reference_clip_encoder(grads, max_norm))

    def diagnose(got, want, args):
        if not np.all(np.isfinite(got)):
            return ("your result is not finite: a gradient of norm 0 needs no clipping "
                    "(min(1, c / 0) is 1, not c / 0).")
        return match_suspect(got, _suspects(args))

    return compare(candidate, reference, _clip_cases(), diagnose,
                   success="your clipping matches optax.masked(optax.clip_by_global_norm(c)) "
                           "on the encoder.")
