r"""The binarised 8x8 digits VAE and IWAE of chapter 5: train with :func:`~lvm_tutorial.training.fit`,
evaluate with a many-sample importance-weighted bound.

A model trained with $K$ importance samples maximises $\mathbb E[\mathrm{IWAE}_K]$ (Burda et al.,
2016); $K = 1$ is the VAE (Kingma & Welling, 2014). Every model here shares the networks, the
initialisation, the optimiser, the minibatches and the number of steps, so that the training
$K$ is the only difference. Test log-likelihood is estimated by

$$\log \hat p(x) = \mathrm{IWAE}_{K_{\mathrm{eval}}}(x)
  = \log \frac{1}{K_{\mathrm{eval}}} \sum_{k=1}^{K_{\mathrm{eval}}} w_k ,$$

a lower bound in expectation that tightens as $K_{\mathrm{eval}}$ grows; the weights are drawn
in chunks so that memory does not grow with $K_{\mathrm{eval}}$.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import logsumexp

from .training import StepInfo, fit
from .vae import VAEParams, iwae_loss, vae_init, vae_log_weights

__all__ = ["DigitsConfig", "train_digits", "log_likelihood_estimate"]

LIKELIHOOD = "bernoulli"


class DigitsConfig(NamedTuple):
    """Network and optimiser settings shared by every model of the comparison.

    ``learning_rate`` is Adam's rate at the first step; it decays to zero at the last along a
    cosine (see :func:`train_digits`)."""
    latent_dim: int = 8
    hidden: tuple[int, ...] = (64,)
    batch_size: int = 64
    learning_rate: float = 3e-3


def _optimizer(config: DigitsConfig, num_steps: int) -> optax.GradientTransformation:
    """Adam, its rate decayed from ``config.learning_rate`` to zero at ``num_steps`` (a cosine)."""
    return optax.adam(optax.cosine_decay_schedule(float(config.learning_rate), int(num_steps)))


def train_digits(key: jax.Array, train_data: jax.Array, num_samples: int, num_steps: int,
                 config: DigitsConfig = DigitsConfig()) -> tuple[VAEParams, StepInfo]:
    r"""Train a Bernoulli-decoder VAE ($K = 1$) or IWAE ($K > 1$) on binary ``train_data`` (N, D).

    Maximises the minibatch average of $\mathrm{IWAE}_K(x)$ with Adam, its learning rate decayed
    from ``config.learning_rate`` to zero along a cosine (``optax.cosine_decay_schedule``). At a
    constant rate the last steps keep moving the parameters, and a rounding-level change (another
    CPU, one ulp in one initial weight) moves the trained model's test bound by several times its
    last printed digit; the decayed rate makes the end point insensitive to such changes. The same
    ``key`` gives the same initial networks and the same minibatches for every ``num_samples``.

    Returns:
      ``(params, info)``; ``info.loss`` (num_steps,) is the negative training bound per step.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if train_data.ndim != 2:
        raise ValueError(f"train_data must be (N, D), got shape {train_data.shape}")
    init_key, fit_key = jax.random.split(key)
    params = vae_init(init_key, train_data.shape[1], config.latent_dim, tuple(config.hidden),
                      LIKELIHOOD)
    loss_fn = partial(iwae_loss, num_samples=int(num_samples), likelihood=LIKELIHOOD)
    # fit compares the loss and the optimiser by value: an equal setting reuses its program
    state, info = fit(fit_key, loss_fn, params, _optimizer(config, num_steps), num_steps, train_data,
                      min(config.batch_size, train_data.shape[0]))
    return state.params, info


@partial(jax.jit, static_argnames=("num_samples", "chunk_size"))
def log_likelihood_estimate(key: jax.Array, params: VAEParams, data: jax.Array,
                            num_samples: int = 2000, chunk_size: int = 500) -> jax.Array:
    r"""$\mathrm{IWAE}_{K}(x)$ for every row of ``data`` (N, D), with $K$ = ``num_samples``.

    The $K$ weights are drawn ``chunk_size`` at a time (``lax.map`` over chunks) and combined
    exactly: $\log \sum_k w_k = \operatorname{logsumexp}_c \operatorname{logsumexp}_{k \in c} \log w_k$.

    Returns:
      ``(N,)`` estimates of $\log p(x)$ in nats.
    """
    if num_samples % chunk_size:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of chunk_size "
                         f"({chunk_size})")
    num_chunks = num_samples // chunk_size

    def chunk(chunk_key):
        keys = jax.random.split(chunk_key, data.shape[0])
        log_w = jax.vmap(vae_log_weights, (0, None, 0, None, None))(
            keys, params, data, chunk_size, LIKELIHOOD)
        return logsumexp(log_w, axis=-1)                                 # (N,)

    per_chunk = jax.lax.map(chunk, jax.random.split(key, num_chunks))    # (chunks, N)
    return logsumexp(per_chunk, axis=0) - jnp.log(num_samples)
