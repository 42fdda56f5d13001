"""Data sets of the course: a known Gaussian mixture, a 2-D toy set, and binarised digits."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .distributions import mixture_sample

__all__ = ["Mixture", "TRUE_MIXTURE", "make_moons", "load_digits_binary"]


class Mixture(NamedTuple):
    """A mixture of diagonal Gaussians: ``logits`` (C,), ``means`` and ``log_scales`` (C, D)."""
    logits: jax.Array
    means: jax.Array
    log_scales: jax.Array

    def sample(self, key, num_samples: int):
        """``(x, z)`` of shapes ``(N, D)`` and ``(N,)``."""
        return mixture_sample(key, self.logits, self.means, self.log_scales, num_samples)


#: The 3-component mixture in 2-D that chapter 1 draws its data from.
TRUE_MIXTURE = Mixture(
    logits=jnp.log(jnp.array([0.5, 0.3, 0.2])),
    means=jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]]),
    log_scales=jnp.log(jnp.array([[0.6, 0.4], [0.5, 0.8], [0.7, 0.3]])),
)


def make_moons(key, num_samples: int, noise: float = 0.08) -> jax.Array:
    """Two interleaved half-circles in 2-D (scaled to unit spread), ``(num_samples, 2)``."""
    t_key, s_key, n_key = jax.random.split(key, 3)
    t = jax.random.uniform(t_key, (num_samples,), minval=0.0, maxval=jnp.pi)
    upper = jax.random.bernoulli(s_key, 0.5, (num_samples,))
    x = jnp.where(upper, jnp.cos(t), 1.0 - jnp.cos(t))
    y = jnp.where(upper, jnp.sin(t), 0.5 - jnp.sin(t))
    points = jnp.stack([x - 0.5, y - 0.25], axis=-1) * 1.5
    return points + noise * jax.random.normal(n_key, points.shape)


def load_digits_binary(test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's bundled 8x8 digits (1797 images), binarised at half intensity.

    Returns ``(train, test)`` float32 arrays of shapes ``(N, 64)`` with entries in {0, 1},
    from a fixed shuffled split (``seed``); needs no download.
    """
    from sklearn.datasets import load_digits

    images = (load_digits().data >= 8.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(images))
    num_test = int(round(test_fraction * len(images)))
    return jnp.asarray(images[order[num_test:]]), jnp.asarray(images[order[:num_test]])
