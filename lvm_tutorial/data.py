"""Data sets of the course: a known Gaussian mixture, a 2-D toy set, binarised digits and MNIST."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .distributions import mixture_sample

__all__ = ["Mixture", "TRUE_MIXTURE", "make_moons", "load_digits_binary", "load_mnist_binary"]


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


def _fetch_mnist(data_home=None) -> np.ndarray:
    """MNIST from OpenML (``mnist_784``): 70000 rows of 784 pixels in [0, 255], the 60000
    training images first. Needs the internet once; scikit-learn keeps its own copy."""
    from sklearn.datasets import fetch_openml

    return fetch_openml("mnist_784", version=1, as_frame=False, data_home=data_home).data


def load_mnist_binary(cache: str | Path | None = None,
                      fetch: Callable[[], np.ndarray] | None = None, num_test: int = 10_000):
    """MNIST binarised at half intensity (pixel >= 128), the standard split.

    ``fetch()`` returns the raw pixels ``(N, 784)`` in [0, 255], training images first and the
    last ``num_test`` rows the test set (OpenML's ``mnist_784`` order: 60000 + 10000); by
    default :func:`sklearn.datasets.fetch_openml`. With ``cache`` (a ``.npz`` path) the
    binarised arrays are written there once and read back on later calls, without fetching.
    A fixed threshold is one of several binarisations in the literature (others sample each
    pixel as a Bernoulli draw of its intensity), so published numbers compare only loosely.

    Returns ``(train, test)`` float32 arrays ``(N - num_test, 784)`` and ``(num_test, 784)``
    with entries in {0, 1}.
    """
    path = None if cache is None else Path(cache)
    if path is not None and path.exists():
        with np.load(path) as stored:
            train, test = stored["train"], stored["test"]
    else:
        pixels = np.asarray((fetch or _fetch_mnist)())
        if pixels.ndim != 2 or not 0 < num_test < len(pixels):
            raise ValueError(f"need (N, D) pixels with N > num_test={num_test}, got "
                             f"{pixels.shape}")
        binary = (pixels >= 128).astype(np.uint8)       # on disk a quarter of float32
        train, test = binary[:-num_test], binary[-num_test:]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, train=train, test=test)
    return jnp.asarray(train, jnp.float32), jnp.asarray(test, jnp.float32)
