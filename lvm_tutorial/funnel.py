r"""Chapter 7's model: a latent-variable sampler of the funnel, trained by reverse KL.

The sampler is the Gaussian VAE of :mod:`lvm_tutorial.vae`: $z \sim \mathcal N(0, I)$,
$x \mid z \sim \mathcal N(\mu_\theta(z), \operatorname{diag}\sigma_\theta(z)^2)$, so
$p_\theta(x) = \int p(z)\, p_\theta(x \mid z)\, dz$ is estimated with the encoder
$q_\phi(z \mid x)$. With the funnel $p^*$ of :mod:`lvm_tutorial.targets` the decoder minimises

$$\mathrm{KL}(p_\theta \,\|\, p^*) = \mathbb E_{x \sim p_\theta}\big[\log p_\theta(x) - \log p^*(x)\big]
\approx \frac1B \sum_{b=1}^B \big[\widehat{\log p_\theta}(x_b) - \log p^*(x_b)\big],$$

$x_b$ drawn by reparameterisation, $\widehat{\log p_\theta}$ either $\mathrm{IWAE}_K$ (a lower
bound: minimising it rewards a loose bound) or SUMO (unbiased; Luo et al., 2020). Training is
:func:`lvm_tutorial.sumo_training.fit_sumo_seeds` with :data:`MATCHING`, many seeds at once;
this module adds chapter 7's evaluation (:func:`true_reverse_kl`, :func:`train_tracked`, and
:func:`refit_encoder` for a measurement the trained encoder cannot bias).
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .estimators import IWAE, SUMO, iwae_bound
from .networks import gaussian_head
from .sumo_training import DensityMatching, fit_sumo_seeds, packed_log_prob
from .targets import funnel_log_prob
from .vae import VAEParams, latent_model, vae_init, vae_log_weights, vae_sample

__all__ = ["SAMPLER", "MATCHING", "sampler_init", "sample_x", "iwae_log_prob",
           "reverse_kl_iwae_loss", "model_log_prob", "reverse_kl_terms", "true_reverse_kl",
           "Checkpoint", "evaluate_checkpoint", "Track", "run_params", "train_tracked", "refit_encoder"]

DATA_DIM = 2
#: The sampler as a :class:`~lvm_tutorial.vae.LatentModel` (Gaussian decoder).
SAMPLER = latent_model("gaussian")


def sampler_init(key, latent_dim: int = 8, hidden: int = 128) -> VAEParams:
    """Encoder ``2 -> hidden -> 2 latent_dim`` and decoder ``latent_dim -> hidden -> 4``, tanh
    (one hidden layer of 128 units and latent dimension 8, as in chapter 7)."""
    return vae_init(key, DATA_DIM, latent_dim, (hidden,))


def sample_x(key, params: VAEParams, num_samples: int) -> jax.Array:
    r"""$x = \mu_\theta(z) + \sigma_\theta(z) \odot \epsilon$ with $z, \epsilon$ standard normal: ``(N, 2)``,
    differentiable in the decoder's parameters."""
    return vae_sample(key, params, num_samples)[0]


def _draw_one(decoder, key) -> jax.Array:
    """One reparameterised $x \\sim p_\\theta$ ``(2,)`` from the decoder's parameters."""
    z_key, x_key = jax.random.split(key)
    z = jax.random.normal(z_key, (decoder[0][0].shape[0],))
    mean, log_scale = gaussian_head(decoder, z)
    return mean + jnp.exp(log_scale) * jax.random.normal(x_key, mean.shape)


#: Reverse KL to the funnel, the objective of :func:`~lvm_tutorial.sumo_training.fit_sumo`.
MATCHING = DensityMatching(_draw_one, funnel_log_prob)


def iwae_log_prob(key, params: VAEParams, x: jax.Array, num_samples: int) -> jax.Array:
    r"""$\mathrm{IWAE}_K(x_n)$ for each row of ``x`` (N, 2): a lower bound on $\log p_\theta(x_n)$ that
    tightens as $K$ grows. Returns ``(N,)``."""
    keys = jax.random.split(key, x.shape[0])
    log_w = jax.vmap(vae_log_weights, (0, None, 0, None))(keys, params, x, num_samples)
    return iwae_bound(log_w)


def reverse_kl_iwae_loss(params: VAEParams, key, batch=None, *, num_samples: int,
                         batch_size: int) -> jax.Array:
    r"""Reverse KL with $\mathrm{IWAE}_K$ for $\log p_\theta$, written directly (for reading; the
    trainer computes the same gradients in packed buffers).

    Its value is the decoder's objective $\frac1B\sum_b [\mathrm{IWAE}_K(x_b) - \log p^*(x_b)]$;
    its gradient is that objective's for $\theta$ and $-\frac1B \sum_b \mathrm{IWAE}_K(x_b)$'s for
    $\phi$ (one backward pass: each network sees only its own term). ``batch`` is unused.
    """
    x_key, w_key = jax.random.split(key)
    x = sample_x(x_key, params, batch_size)
    sg = jax.lax.stop_gradient
    dec_route = VAEParams(sg(params.encoder), params.decoder)
    enc_route = VAEParams(params.encoder, sg(params.decoder))
    log_p_dec = iwae_log_prob(w_key, dec_route, x, num_samples)
    log_p_enc = iwae_log_prob(w_key, enc_route, sg(x), num_samples)
    return jnp.mean(log_p_dec - funnel_log_prob(x)) + jnp.mean(sg(log_p_enc) - log_p_enc)


# --- evaluation -----------------------------------------------------------------------------

def _iwae_in_chunks(key, params, x, num_samples: int):
    keys = jax.random.split(key, x.shape[0])
    # 64 points at a time: thousands of samples for thousands of points would not fit in memory.
    return jax.lax.map(lambda args: iwae_bound(vae_log_weights(args[0], params, args[1], num_samples)),
                       (keys, x), batch_size=64)


@partial(jax.jit, static_argnames=("num_samples",))
def model_log_prob(key, params: VAEParams, x: jax.Array, num_samples: int = 256) -> jax.Array:
    r"""$\mathrm{IWAE}_K(x_n) \approx \log p_\theta(x_n)$ for many points ``x`` (N, 2), e.g. a plotting
    grid, 64 points at a time. Returns ``(N,)``."""
    return _iwae_in_chunks(key, params, x, num_samples)


@partial(jax.jit, static_argnames=("num_x", "num_samples"))
def _draw_and_score(key, params, num_x: int, num_samples: int):
    r"""Fresh ``x`` from the model, $\mathrm{IWAE}_K(x)$ with many samples, and $\log p^*(x)$."""
    x_key, w_key = jax.random.split(key)
    x = sample_x(x_key, params, num_x)
    return x, _iwae_in_chunks(w_key, params, x, num_samples), funnel_log_prob(x)


def reverse_kl_terms(key, params: VAEParams, num_x: int = 1024, num_samples: int = 2048):
    r"""The terms $\mathrm{IWAE}_K(x_n) - \log p^*(x_n)$ of :func:`true_reverse_kl`, one per fresh
    $x_n \sim p_\theta$: ``(terms (N,) float64, x (N, 2))``.

    Their mean estimates $\mathrm{KL}(p_\theta \| p^*)$; for a sampler that puts some mass far out
    in the funnel's tails (an untrained one) a few terms are huge and dominate the mean, and
    their quantiles say more than their mean and standard error.
    """
    x, log_p, log_target = _draw_and_score(key, params, int(num_x), int(num_samples))
    return np.asarray(log_p - log_target, np.float64), x


def true_reverse_kl(key, params: VAEParams, num_x: int = 1024, num_samples: int = 2048):
    r"""An independent estimate of $\mathrm{KL}(p_\theta \| p^*)$ and its standard error.

    Fresh $x_n \sim p_\theta$ (not the training draws), $\log p_\theta(x_n)$ by
    $\mathrm{IWAE}_{K}$ with ``num_samples`` importance samples, minus $\log p^*(x_n)$; averaged
    (the terms are :func:`reverse_kl_terms`). Since $\mathrm{IWAE}_K \le \log p_\theta$ in
    expectation, this is slightly low. Returns ``(mean, standard error, x)``.
    """
    terms, x = reverse_kl_terms(key, params, num_x, num_samples)
    return float(terms.mean()), float(terms.std(ddof=1) / math.sqrt(len(terms))), x


class Checkpoint(NamedTuple):
    r"""One evaluation: the method's own KL estimate, the independent one, and their paired gap
    $\frac1N\sum_n [\mathrm{IWAE}_{\text{many}}(x_n) - \widehat{\log p}(x_n)]$, each with its
    standard error, on the same fresh $x_n$."""
    own: float
    own_se: float
    true: float
    true_se: float
    gap: float
    gap_se: float


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def evaluate_checkpoint(key, params: VAEParams, estimator: SUMO | IWAE, *, num_x: int = 512,
                        eval_samples: int = 2048) -> Checkpoint:
    """Score the sampler with its training ``estimator`` and with :func:`true_reverse_kl`'s, on
    the same fresh draws."""
    x_key, own_key = jax.random.split(key)
    x, log_p, log_target = _draw_and_score(x_key, params, int(num_x), int(eval_samples))
    own = packed_log_prob(own_key, SAMPLER, params, x, estimator)
    log_p, log_target = np.asarray(log_p), np.asarray(log_target)
    return Checkpoint(*_mean_se(own - log_target), *_mean_se(log_p - log_target), *_mean_se(log_p - own))


class Track(NamedTuple):
    """:func:`train_tracked`'s record of ``num_runs`` runs: ``step`` (C,); a :class:`Checkpoint` whose
    fields are ``(num_runs, C)`` arrays (run, checkpoint); the per-step training ``loss``
    ``(num_runs, steps)``;
    and the parameters at each checkpoint, a list of ``C`` stacked :class:`VAEParams`."""
    step: np.ndarray
    checkpoints: Checkpoint
    loss: np.ndarray
    snapshots: list


def run_params(stacked, run: int):
    """Run ``run``'s parameters from parameters stacked along a leading run axis."""
    return jax.tree.map(lambda leaf: leaf[run], stacked)


def _evaluate_runs(key, stacked, estimator, options) -> list[Checkpoint]:
    """:func:`evaluate_checkpoint` for each run, each with its own key (one compiled program)."""
    keys = jax.random.split(key, jax.tree.leaves(stacked)[0].shape[0])
    return [evaluate_checkpoint(k, run_params(stacked, r), estimator, **options) for r, k in enumerate(keys)]


def train_tracked(keys, params: VAEParams, optimizer: optax.GradientTransformation, num_steps: int,
                  num_checkpoints: int, estimator: SUMO | IWAE, *, batch_size: int = 32,
                  num_x: int = 512, eval_samples: int = 2048):
    """Train ``num_runs`` runs at once with ``estimator`` (``SUMO(m)`` or ``IWAE(K)``), through
    :func:`~lvm_tutorial.sumo_training.fit_sumo_seeds`, and :func:`evaluate_checkpoint` every run
    at the start and after each of ``num_checkpoints`` equal segments.

    ``keys`` ``(num_runs,)``: one key per run; ``params``: stacked along a leading axis ``num_runs`` (each run
    may start elsewhere). Returns ``(state, Track)``, the state stacked the same way.
    """
    if not isinstance(estimator, (SUMO, IWAE)):
        raise ValueError(f"estimator must be SUMO(...) or IWAE(...), got {estimator!r}")
    if num_checkpoints < 1 or num_steps % num_checkpoints:
        raise ValueError(f"num_steps={num_steps} must split into num_checkpoints={num_checkpoints} equal parts")
    segment = num_steps // num_checkpoints
    options = dict(num_x=num_x, eval_samples=eval_samples)
    root = jax.random.fold_in(keys[0], len(keys))            # the evaluations' own randomness
    keys = jnp.stack([jax.random.split(k, num_checkpoints) for k in keys])       # (num_runs, C)
    state, losses, snapshots = None, [], [params]
    rows = [_evaluate_runs(jax.random.fold_in(root, 0), params, estimator, options)]
    for c in range(num_checkpoints):
        state, info = fit_sumo_seeds(keys[:, c], SAMPLER, params, optimizer, segment, objective=MATCHING,
                                     estimator=estimator, batch_size=batch_size, state=state)
        losses.append(info.loss)
        rows.append(_evaluate_runs(jax.random.fold_in(root, c + 1), state.params, estimator, options))
        snapshots.append(state.params)
    table = Checkpoint(*(np.array([[getattr(row[r], field) for row in rows] for r in range(len(keys))])
                         for field in Checkpoint._fields))
    return state, Track(np.arange(num_checkpoints + 1) * segment, table, np.concatenate(losses, axis=1),
                        snapshots)


def refit_encoder(keys, params: VAEParams, optimizer: optax.GradientTransformation, num_steps: int,
                  num_samples: int = 16, *, batch_size: int = 32) -> VAEParams:
    r"""A fresh encoder for each run's frozen decoder, for an evaluation the trained encoder
    cannot bias.

    A decoder trained with its own encoder may have learned where that encoder is poor; since
    $\mathrm{IWAE}$ is a lower bound whatever the encoder, a KL measured with it is low by the
    encoder's remaining gap. Here a newly initialised encoder (from ``keys`` ``(num_runs,)``) maximises
    $\mathbb E_{x \sim p_\theta}[\mathrm{IWAE}_K(x)]$ ($K$ = ``num_samples``) on fresh model
    samples at every step, with the decoder frozen (its updates zeroed by
    ``optax.multi_transform``). Returns the stacked :class:`VAEParams` (new encoder, same decoder).
    """
    hidden = params.encoder[0][0].shape[-1]
    latent_dim = params.decoder[0][0].shape[-2]
    fresh = jax.vmap(lambda k: sampler_init(k, latent_dim, hidden).encoder)(keys)
    frozen = optax.multi_transform({"train": optimizer, "freeze": optax.set_to_zero()},
                                   VAEParams("train", "freeze"))
    state, _ = fit_sumo_seeds(jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), SAMPLER,
                              VAEParams(fresh, params.decoder), frozen, num_steps, objective=MATCHING,
                              estimator=IWAE(num_samples), batch_size=batch_size)
    return state.params
