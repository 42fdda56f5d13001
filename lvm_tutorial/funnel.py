r"""Density matching on the funnel: a latent-variable sampler trained by reverse KL.

The sampler is the model of :mod:`lvm_tutorial.vae` with a Gaussian decoder:
$z \sim \mathcal N(0, I)$, $x \mid z \sim \mathcal N(\mu_\theta(z), \operatorname{diag}\sigma_\theta(z)^2)$,
so $p_\theta(x) = \int p(z)\, p_\theta(x \mid z)\, dz$ is intractable and is estimated with
the encoder $q_\phi(z \mid x)$. With an unnormalised target $p^*$ (the funnel of
:mod:`lvm_tutorial.targets`) the decoder minimises the reverse KL

$$\mathrm{KL}(p_\theta \,\|\, p^*) = \mathbb E_{x \sim p_\theta}\big[\log p_\theta(x) - \log p^*(x)\big]
\approx \frac1B \sum_{b=1}^B \big[\widehat{\log p_\theta}(x_b) - \log p^*(x_b)\big],$$

with $x_b$ drawn by reparameterisation so that the gradient flows through them, and
$\widehat{\log p_\theta}$ either $\mathrm{IWAE}_K$ (a lower bound: minimising it rewards a
loose bound) or SUMO (unbiased; Luo et al., 2020). The encoder maximises $\mathrm{IWAE}_K$, or
minimises $\mathbb E[\mathrm{SUMO}^2]$, the variance of SUMO up to a constant.

:func:`fit_sumo` is the package's one SUMO trainer: a fresh $K$ for every example at every
step, no truncation, and a bounded number of compilations. It packs the $m + K_b$ samples
of all examples of a step into flat buffers of 256 slots (a step needs $B (m + \mathbb E K) \approx 290$
samples on average for $B = 32$, $m = 4$), splits the steps that overflow one buffer into several
micro-batches whose gradients are summed before the optimiser step, and runs many
micro-batches per call in one ``lax.scan``.
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from scipy.special import ndtr, ndtri

from .estimators import iwae_bound, log_tail_survival, sample_num_terms
from .networks import gaussian_head, matmul
from .targets import FUNNEL_SCALE, funnel_log_prob
from .training import TrainState
from .vae import VAEParams, vae_init, vae_log_weights, vae_sample

__all__ = [
    "sampler_init",
    "sample_x",
    "iwae_log_prob",
    "reverse_kl_iwae_loss",
    "sumo_flat",
    "MicroBatches",
    "pack_microbatches",
    "microbatch_grads",
    "SumoInfo",
    "fit_sumo",
    "sumo_log_prob",
    "model_log_prob",
    "reverse_kl_terms",
    "true_reverse_kl",
    "Checkpoint",
    "evaluate_checkpoint",
    "Track",
    "train_tracked",
    "x1_wasserstein",
    "x1_ks",
    "neck_fraction",
    "NECK",
    "EXACT_NECK_FRACTION",
]

DATA_DIM = 2
NECK = -2.0
#: $P(x_1 < -2) = \Phi(-2 / 1.35)$ under the funnel.
EXACT_NECK_FRACTION = float(ndtr(NECK / FUNNEL_SCALE))
_LOG_2PI = math.log(2.0 * math.pi)


def sampler_init(key, latent_dim: int = 8, hidden: int = 128) -> VAEParams:
    """Encoder ``2 -> hidden -> 2 latent_dim`` and decoder ``latent_dim -> hidden -> 4``, tanh
    (the sources' sizes: one hidden layer of 128 units, latent dimension 8)."""
    return vae_init(key, DATA_DIM, latent_dim, (hidden,))


def sample_x(key, params: VAEParams, num_samples: int) -> jax.Array:
    r"""$x = \mu_\theta(z) + \sigma_\theta(z) \odot \epsilon$ with $z, \epsilon$ standard normal: ``(N, 2)``,
    differentiable in the decoder's parameters."""
    return vae_sample(key, params, num_samples)[0]


def iwae_log_prob(key, params: VAEParams, x: jax.Array, num_samples: int) -> jax.Array:
    r"""$\mathrm{IWAE}_K(x_n)$ for each row of ``x`` (N, 2): a lower bound on $\log p_\theta(x_n)$ that
    tightens as $K$ grows. Returns ``(N,)``."""
    keys = jax.random.split(key, x.shape[0])
    log_w = jax.vmap(vae_log_weights, (0, None, 0, None))(keys, params, x, num_samples)
    return iwae_bound(log_w)


def _split_routes(params: VAEParams) -> tuple[VAEParams, VAEParams]:
    """``(decoder route, encoder route)``: the same values, gradients reaching only one network."""
    sg = jax.lax.stop_gradient
    return VAEParams(sg(params.encoder), params.decoder), VAEParams(params.encoder, sg(params.decoder))


def reverse_kl_iwae_loss(params: VAEParams, key, batch=None, *, num_samples: int,
                         batch_size: int) -> jax.Array:
    r"""Reverse KL with $\mathrm{IWAE}_K$ in place of $\log p_\theta$; a loss for :func:`~lvm_tutorial.fit`.

    Its value is the decoder's objective $\frac1B\sum_b [\mathrm{IWAE}_K(x_b) - \log p^*(x_b)]$;
    its gradient is that objective's for $\theta$ and $-\frac1B \sum_b \mathrm{IWAE}_K(x_b)$'s for
    $\phi$ (one backward pass: each network sees only its own term). ``batch`` is unused.
    """
    x_key, w_key = jax.random.split(key)
    x = sample_x(x_key, params, batch_size)
    dec_route, enc_route = _split_routes(params)
    log_p_dec = iwae_log_prob(w_key, dec_route, x, num_samples)
    log_p_enc = iwae_log_prob(w_key, enc_route, jax.lax.stop_gradient(x), num_samples)
    kl = jnp.mean(log_p_dec - funnel_log_prob(x))
    return kl + jnp.mean(jax.lax.stop_gradient(log_p_enc) - log_p_enc)


# --- the flat SUMO kernel -----------------------------------------------------------------

def _log_prefix(log_weights, segment_ids, block: int = 8):
    r"""$\ell_t = \log \sum_{s \le t,\ \text{same example}} e^{\log w_s}$ for every slot, exact for any spread.

    The buffer is cut into blocks of ``block`` slots. Inside a block each prefix is shifted by
    its own running maximum, so every sum is at least 1 and nothing over- or underflows; an
    example that began in an earlier block adds the log-sum of its earlier blocks' tails. Work
    is ``L * block + (L / block)**2``, not ``L**2``: for ``L = 256`` blocks of 4 or 8 slots were
    the fastest here (the trainer's whole step ran 20 % faster with 8 than with 32).
    """
    size = log_weights.shape[0]
    pad = -size % block
    lw = jnp.pad(log_weights, (0, pad)).reshape(-1, block)
    seg = jnp.pad(segment_ids, (0, pad), constant_values=-1).reshape(-1, block)
    i = jnp.arange(block)
    same = (seg[:, :, None] == seg[:, None, :]) & (i[None, None, :] <= i[None, :, None])    # [b, t, s]
    run_max = jax.lax.stop_gradient(jnp.max(jnp.where(same, lw[:, None, :], -jnp.inf), axis=2))
    # exp of -inf where masked: a masked pair contributes neither a value nor a NaN gradient
    local = run_max + jnp.log(jnp.sum(jnp.exp(jnp.where(same, lw[:, None, :] - run_max[:, :, None], -jnp.inf)),
                                      axis=2))
    tail, last, first = local[:, -1], seg[:, -1], seg[:, 0]
    k = jnp.arange(lw.shape[0])
    feeds = (last[None, :] == first[:, None]) & (k[None, :] < k[:, None])            # block k' feeds block k
    top = jax.lax.stop_gradient(jnp.max(jnp.where(feeds, tail[None, :], -jnp.inf), axis=1))
    has_carry = jnp.isfinite(top)
    top = jnp.where(has_carry, top, 0.0)
    carry = top + jnp.log(jnp.sum(jnp.exp(jnp.where(feeds, tail[None, :] - top[:, None], -jnp.inf)), axis=1)
                          + jnp.where(has_carry, 0.0, 1.0))
    continues = (seg == first[:, None]) & has_carry[:, None]
    out = jnp.where(continues, jnp.logaddexp(local, carry[:, None]), local)
    return out.reshape(-1)[:size]


def sumo_flat(log_weights: jax.Array, segment_ids: jax.Array, positions: jax.Array,
              num_segments: int, min_terms: int, *, alpha: float = 80, b: float = 0.1) -> jax.Array:
    r"""SUMO of several examples whose log-weights lie one after another in a flat buffer.

    Example $e$ owns a contiguous run of $m + K_e$ slots (``segment_ids == e``, ``positions``
    $0, 1, \dots$); slots with ``segment_ids == num_segments`` are padding. With
    $\ell_k = \log \sum_{i \le k} w_i$ inside the example,

    $$\mathrm{SUMO}_e = \ell_m - \log m + \sum_{j=1}^{K_e} \frac{1}{P(K \ge j)}
      \Big[\log\big(1 + e^{\log w_{m+j} - \ell_{m+j-1}}\big) - \log\Big(1 + \frac{1}{m+j-1}\Big)\Big],$$

    the value of :func:`~lvm_tutorial.estimators.sumo_from_log_weights` (each bracket is
    $\mathrm{IWAE}_{m+j} - \mathrm{IWAE}_{m+j-1}$, written so that nothing cancels). The prefix
    log-sums $\ell$ come from a blocked segmented log-sum-exp (:func:`_log_prefix`), exact for
    any spread of the log-weights, in ``L * 32`` work.

    Args:
      log_weights, segment_ids, positions: ``(L,)`` each.
      num_segments: the static number of examples (``segment_ids`` in ``[0, num_segments]``).
      min_terms: $m \ge 1$; alpha, b: the tail of $K$.

    Returns:
      ``(num_segments,)``.
    """
    min_terms = int(min_terms)
    if min_terms < 1:
        raise ValueError(f"min_terms must be at least 1, got {min_terms}")
    if log_weights.ndim != 1 or segment_ids.shape != log_weights.shape or positions.shape != log_weights.shape:
        raise ValueError("log_weights, segment_ids and positions must be 1-D of one length; got "
                         f"{log_weights.shape}, {segment_ids.shape}, {positions.shape}")
    dtype = log_weights.dtype
    member = segment_ids[:, None] == jnp.arange(num_segments)[None, :]        # (L, E)
    log_prefix = _log_prefix(log_weights, segment_ids)
    log_before = jnp.concatenate([log_prefix[:1], log_prefix[:-1]])
    valid = segment_ids < num_segments
    j = positions - min_terms + 1
    correction = (j >= 1) & valid
    weight = jnp.exp(-log_tail_survival(jnp.where(correction, j, 1), alpha, b)).astype(dtype)
    before = jnp.maximum(positions, 1).astype(dtype)
    delta = jax.nn.softplus(log_weights - log_before) - jnp.log1p(1.0 / before)
    first = log_prefix - math.log(min_terms)                              # IWAE_m at slot m - 1
    terms = (jnp.where(correction, weight * delta, 0.0)
             + jnp.where((positions == min_terms - 1) & valid, first, 0.0))
    return terms @ member.astype(dtype)


class MicroBatches(NamedTuple):
    """A packed plan: seat ``i`` of micro-batch ``t`` holds example ``first[t] + i`` of step ``step[t]``.

    ``segment_ids``/``positions`` ``(T, L)`` (the seat owning each slot, and the slot's place
    among that example's samples), ``example_weight`` ``(T, B)`` ($1/B$ for a real example, 0
    for an empty seat), ``last`` ``(T,)`` (apply the optimiser after this one), ``step`` and
    ``first`` ``(T,)``.
    """
    segment_ids: np.ndarray
    positions: np.ndarray
    example_weight: np.ndarray
    last: np.ndarray
    step: np.ndarray
    first: np.ndarray


def pack_microbatches(num_terms: np.ndarray, min_terms: int, buffer_size: int) -> MicroBatches:
    """Pack each step's examples, in order, into as few buffers of ``buffer_size`` slots as fit.

    ``num_terms`` ``(S, B)`` holds every example's $K$; example $b$ needs ``min_terms + K_b``
    slots, so ``buffer_size`` must be at least ``min_terms + num_terms.max()``.
    """
    num_terms = np.asarray(num_terms)
    if num_terms.ndim != 2:
        raise ValueError(f"num_terms must be (steps, batch), got shape {num_terms.shape}")
    lengths = min_terms + num_terms.astype(np.int64)
    if lengths.max() > buffer_size:
        raise ValueError(f"buffer_size={buffer_size} is smaller than min_terms + max K = {lengths.max()}")
    steps, batch = num_terms.shape
    # Greedy, in order, one column at a time for all steps at once: an example opens a new
    # micro-batch of its step when it does not fit in the current one.
    local = np.zeros((steps, batch), np.int64)         # micro-batch of each example within its step
    used, group = np.zeros(steps, np.int64), np.zeros(steps, np.int64)
    for e in range(batch):
        opens = used + lengths[:, e] > buffer_size
        group += opens
        used = np.where(opens, 0, used) + lengths[:, e]
        local[:, e] = group
    per_step = local[:, -1] + 1
    owner = (np.cumsum(per_step) - per_step)[:, None] + local           # global micro-batch id
    owner, sizes = owner.ravel(), lengths.ravel()
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])       # first example of each
    count = len(starts)
    step = (starts // batch).astype(np.int32)
    first = (starts % batch).astype(np.int32)
    seat = np.arange(steps * batch) % batch - first[owner]
    begin = np.cumsum(sizes) - sizes                                    # slot of each example, run-wide
    offset = begin - begin[starts][owner]                               # ... and within its micro-batch
    # every slot of every example at once
    slot_owner = np.repeat(owner, sizes)
    within = np.arange(sizes.sum()) - np.repeat(begin, sizes)
    segment_ids = np.full((count, buffer_size), batch, np.int32)
    positions = np.zeros((count, buffer_size), np.int32)
    segment_ids[slot_owner, np.repeat(offset, sizes) + within] = np.repeat(seat, sizes)
    positions[slot_owner, np.repeat(offset, sizes) + within] = within
    example_weight = np.zeros((count, batch), np.float32)
    example_weight[owner, seat] = 1.0 / batch
    last = np.r_[step[1:] != step[:-1], True]
    return MicroBatches(segment_ids, positions, example_weight, last, step, first)


def _slot_sumo(decoder, q_mean, q_log_scale, x, eps, segment_ids, positions, min_terms, alpha, b):
    """SUMO of each example from its slots: $z = \\mu_q + \\sigma_q \\epsilon$, log-weights, :func:`sumo_flat`."""
    batch, latent_dim = q_mean.shape
    member = (segment_ids[:, None] == jnp.arange(batch)[None, :]).astype(eps.dtype)
    per_slot = matmul(member, jnp.concatenate(
        [q_mean, jnp.exp(q_log_scale), x, jnp.sum(q_log_scale, -1, keepdims=True)], axis=-1))
    z = per_slot[:, :latent_dim] + per_slot[:, latent_dim:2 * latent_dim] * eps
    mean, log_scale = gaussian_head(decoder, z)
    r = (per_slot[:, 2 * latent_dim:2 * latent_dim + DATA_DIM] - mean) * jnp.exp(-log_scale)
    # log p(x|z) + log p(z) - log q(z|x); the -log(2 pi)/2 of p(z) and q cancel.
    log_w = (jnp.sum(-0.5 * _LOG_2PI - log_scale - 0.5 * r * r, -1)
             + jnp.sum(0.5 * eps * eps - 0.5 * z * z, -1) + per_slot[:, -1])
    log_w = jnp.where(segment_ids < batch, log_w, 0.0)
    return sumo_flat(log_w, segment_ids, positions, batch, min_terms, alpha=alpha, b=b)


def microbatch_grads(params: VAEParams, noise, segment_ids, positions, example_weight, min_terms: int,
                     alpha: float = 80, b: float = 0.1):
    r"""Gradients of one micro-batch's share of both objectives, with one backward pass over the slots.

    ``noise = (z0 (B, d), eps_x (B, 2), eps (L, d))``: $x_b = \mu_\theta(z_{0b}) + \sigma_\theta(z_{0b})\epsilon_{x,b}$,
    and slot $t$ of example $e$ draws $z_t = \mu_\phi(x_e) + \sigma_\phi(x_e)\epsilon_t$. With
    $w_b$ = ``example_weight``, the decoder's objective is $\sum_b w_b[\mathrm{SUMO}_b - \log p^*(x_b)]$
    and the encoder's $\sum_b w_b \mathrm{SUMO}_b^2$. Both reach the slots only through the
    encoder's outputs $(\mu_\phi, \log\sigma_\phi)$ and $x$: the encoder's cotangent is the
    decoder's times $2\,\mathrm{SUMO}_b$ per example, so one backward pass through the slots
    serves both. Returns ``(grads, decoder objective, encoder objective)``.
    """
    z0, eps_x, eps = noise

    def draw_x(decoder):
        mean, log_scale = gaussian_head(decoder, z0)
        return mean + jnp.exp(log_scale) * eps_x

    x, x_vjp = jax.vjp(draw_x, params.decoder)
    (q_mean, q_log_scale), encoder_vjp = jax.vjp(gaussian_head, params.encoder, x)
    slots = partial(_slot_sumo, eps=eps, segment_ids=segment_ids, positions=positions,
                    min_terms=min_terms, alpha=alpha, b=b)
    values, slots_vjp = jax.vjp(slots, params.decoder, q_mean, q_log_scale, x)
    g_decoder, g_mean, g_log_scale, g_x = slots_vjp(example_weight)
    # One batched pass back through the encoder: cotangent 0 scaled by 2 SUMO_b (its own
    # objective), cotangent 1 unscaled (the decoder's path through x).
    scale = jnp.stack([2.0 * values, jnp.ones_like(values)])[:, :, None]
    g_encoders, g_xs = jax.vmap(encoder_vjp)((scale * g_mean, scale * g_log_scale))
    g_encoder, g_x_through_q = jax.tree.map(lambda a: a[0], g_encoders), g_xs[1]
    log_target, g_target = jax.vmap(jax.value_and_grad(funnel_log_prob))(x)
    (g_decoder_x,) = x_vjp(g_x + g_x_through_q - example_weight[:, None] * g_target)
    grads = VAEParams(g_encoder, jax.tree.map(jnp.add, g_decoder, g_decoder_x))
    return (grads, jnp.sum(example_weight * (values - log_target)),
            jnp.sum(example_weight * jnp.square(values)))


@partial(jax.jit, static_argnames=("optimizer", "min_terms", "alpha", "b"))
def _run_chunk(optimizer, state: TrainState, key, chunk_index, segment_ids, positions, example_weight,
               last, min_terms, alpha, b):
    """``lax.scan`` over a chunk's micro-batches; the optimiser steps after each step's last one.

    The parameters travel as one flat vector (``state.opt_state`` belongs to that vector): the
    optimiser then runs as a few fused loops instead of a few per layer.
    """
    count, size = segment_ids.shape
    batch = example_weight.shape[1]
    latent_dim = state.params.decoder[0][0].shape[0]
    width = batch * (latent_dim + DATA_DIM) + size * latent_dim
    # All of the chunk's noise in one call: far cheaper per number than one call per step.
    noise = jax.random.normal(jax.random.fold_in(key, chunk_index), (count, width))
    flat_params, unravel = ravel_pytree(state.params)

    def body(carry, inputs):
        params, opt_state, acc = carry
        flat, seg, pos, weight, apply = inputs
        z0 = flat[:batch * latent_dim].reshape(batch, latent_dim)
        eps_x = flat[batch * latent_dim:batch * (latent_dim + DATA_DIM)].reshape(batch, DATA_DIM)
        eps = flat[batch * (latent_dim + DATA_DIM):].reshape(size, latent_dim)
        grads, dec, enc = microbatch_grads(unravel(params), (z0, eps_x, eps), seg, pos, weight,
                                           min_terms, alpha, b)
        acc = acc + ravel_pytree(grads)[0]
        updates, new_opt_state = optimizer.update(acc, opt_state, params)
        params = jnp.where(apply, optax.apply_updates(params, updates), params)
        opt_state = jax.tree.map(lambda new, old: jnp.where(apply, new, old), new_opt_state, opt_state)
        acc = jnp.where(apply, 0.0, acc)
        return (params, opt_state, acc), (dec, enc)

    (flat_params, opt_state, _), (dec, enc) = jax.lax.scan(
        body, (flat_params, state.opt_state, jnp.zeros_like(flat_params)),
        (noise, segment_ids, positions, example_weight, last))
    return TrainState(unravel(flat_params), opt_state), dec, enc


def _init_state(params: VAEParams, optimizer: optax.GradientTransformation) -> TrainState:
    """:func:`fit_sumo`'s state: the parameters, and the optimiser's state for them as one flat vector."""
    return TrainState(params, optimizer.init(ravel_pytree(params)[0]))


@partial(jax.jit, static_argnames=("optimizer", "num_steps", "batch_size", "alpha", "b"))
def _prepare(key, params, optimizer, num_steps: int, batch_size: int, alpha: float, b: float):
    """Every example's K for the run, the run's key, and a fresh optimiser state (one compile)."""
    k_key, run_key = jax.random.split(key)
    num_terms = sample_num_terms(k_key, (num_steps * batch_size,), alpha, b)
    return num_terms.reshape(num_steps, batch_size), run_key, _init_state(params, optimizer)


class SumoInfo(NamedTuple):
    """Per step: ``loss`` the decoder's reverse-KL estimate, ``sumo_sq`` the encoder's
    $\\frac1B\\sum_b \\mathrm{SUMO}_b^2$, ``num_terms`` the $K$ of every example ``(steps, B)``."""
    loss: np.ndarray
    sumo_sq: np.ndarray
    num_terms: np.ndarray


def fit_sumo(key, params: VAEParams, optimizer: optax.GradientTransformation, num_steps: int, *,
             batch_size: int = 32, min_terms: int = 4, state: TrainState | None = None,
             buffer_size: int = 256, chunk_size: int = 128, alpha: float = 80,
             b: float = 0.1) -> tuple[TrainState, SumoInfo]:
    r"""Train the sampler on the funnel with SUMO: exact, a fresh $K$ per example per step.

    Each step draws $B$ model samples $x_b$ and a $K_b$ for each, estimates $\log p_\theta(x_b)$
    by SUMO from $m + K_b$ encoder samples, and takes one optimiser step on the decoder's
    reverse-KL estimate (for $\theta$) and on $\frac1B\sum_b \mathrm{SUMO}_b^2$ (for $\phi$), as
    :func:`microbatch_grads` computes them. Every $K$ is drawn up front, every example gets
    all its samples (no cap), and a step whose $\sum_b (m + K_b)$ exceeds ``buffer_size`` is
    split into micro-batches whose gradients add up before the step. One program is compiled
    per ``(buffer_size, chunk_size)``; a larger buffer is compiled only for an example whose
    $m + K$ alone exceeds ``buffer_size`` (for the default tail and buffer, $P(K > 252)$ is about
    $10^{-10}$ per example). The default buffer of 256 slots was the fastest of 160 to 384 here.

    Args:
      key: PRNG key.
      params: the sampler's :class:`~lvm_tutorial.vae.VAEParams` (ignored when ``state`` is given).
      optimizer: an optax transformation, created once and reused (it is a static argument).
      num_steps: optimiser steps.
      batch_size, min_terms: $B$ and $m$.
      state: a :class:`~lvm_tutorial.training.TrainState` returned by ``fit_sumo``, to continue
        from (its optimiser state belongs to the flattened parameters).
      buffer_size: slots per micro-batch; chunk_size: micro-batches per compiled call.
      alpha, b: the tail of $K$ (:func:`~lvm_tutorial.estimators.tail_survival`).

    Returns:
      ``(state, SumoInfo)``.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if int(min_terms) < 1:
        raise ValueError(f"min_terms must be at least 1, got {min_terms}")
    if int(chunk_size) < int(batch_size):
        raise ValueError(f"chunk_size must be at least batch_size={batch_size} (a step may need one "
                         f"micro-batch per example), got {chunk_size}")
    num_steps, batch_size, min_terms = int(num_steps), int(batch_size), int(min_terms)
    # Continuing runs pass the same arguments too (the fresh state is then unused): no new compile.
    num_terms, run_key, fresh = _prepare(key, params if state is None else state.params, optimizer,
                                         num_steps, batch_size, float(alpha), float(b))
    state = fresh if state is None else state
    num_terms = np.asarray(num_terms)
    longest = min_terms + int(num_terms.max())
    size = buffer_size if longest <= buffer_size else 128 * -(-longest // 128)
    plan = pack_microbatches(num_terms, min_terms, size)
    # Whole steps per chunk, so that no gradient is left half-summed between calls.
    starts, t = [], 0
    total = len(plan.step)
    while t < total:
        starts.append(t)
        end = min(t + chunk_size, total)
        if end < total:
            while plan.step[end - 1] == plan.step[end]:
                end -= 1
        t = end
    starts.append(total)
    decs, encs = [], []
    for c in range(len(starts) - 1):
        lo, hi = starts[c], starts[c + 1]
        pad = chunk_size - (hi - lo)
        grab = lambda a, fill: np.concatenate([a[lo:hi], np.full((pad,) + a.shape[1:], fill, a.dtype)])
        state, dec, enc = _run_chunk(optimizer, state, run_key, c, grab(plan.segment_ids, batch_size),
                                     grab(plan.positions, 0), grab(plan.example_weight, 0.0),
                                     grab(plan.last, False), min_terms, float(alpha), float(b))
        decs.append(np.asarray(dec)[:hi - lo])
        encs.append(np.asarray(enc)[:hi - lo])
    loss = np.bincount(plan.step, np.concatenate(decs), minlength=num_steps)
    sumo_sq = np.bincount(plan.step, np.concatenate(encs), minlength=num_steps)
    return state, SumoInfo(loss.astype(np.float32), sumo_sq.astype(np.float32), num_terms)


@partial(jax.jit, static_argnames=("min_terms", "alpha", "b"))
def _sumo_microbatches(params, x, eps, segment_ids, positions, min_terms, alpha, b):
    """SUMO of every seat of every micro-batch (forward only): ``x`` (T, B, 2) -> (T, B)."""
    def one(args):
        x_t, eps_t, seg, pos = args
        q_mean, q_log_scale = gaussian_head(params.encoder, x_t)
        return _slot_sumo(params.decoder, q_mean, q_log_scale, x_t, eps_t, seg, pos, min_terms, alpha, b)
    return jax.lax.map(one, (x, eps, segment_ids, positions))


@partial(jax.jit, static_argnames=("count", "alpha", "b"))
def _draw_num_terms(key, count: int, alpha: float, b: float):
    return sample_num_terms(key, (count,), alpha, b)


def sumo_log_prob(key, params: VAEParams, x, min_terms: int = 4, *, batch_size: int = 32,
                  buffer_size: int = 256, alpha: float = 80, b: float = 0.1) -> np.ndarray:
    r"""SUMO estimates of $\log p_\theta(x_n)$ for the rows of ``x`` (N, 2), a fresh $K$ for each
    (unbiased, no cap), computed in the flat buffers of :func:`fit_sumo`. Returns ``(N,)``."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != DATA_DIM:
        raise ValueError(f"x must be (N, 2), got shape {x.shape}")
    steps = -(-len(x) // batch_size)
    k_key, e_key = jax.random.split(key)
    num_terms = np.asarray(_draw_num_terms(k_key, steps * batch_size, float(alpha), float(b)))
    num_terms = num_terms.reshape(steps, batch_size)
    longest = int(min_terms) + int(num_terms.max())
    size = buffer_size if longest <= buffer_size else 128 * -(-longest // 128)
    plan = pack_microbatches(num_terms, min_terms, size)
    # Two padded shapes at most (a run rarely needs twice as many buffers as steps): few compiles.
    count = 2 * steps if len(plan.step) <= 2 * steps else batch_size * steps
    seats = np.arange(batch_size)
    index = plan.step[:, None] * batch_size + plan.first[:, None] + seats[None, :]      # (T, B)
    real = plan.example_weight > 0
    padded = np.concatenate([x, np.repeat(x[:1], steps * batch_size - len(x) + 1, axis=0)])
    rows = np.where(real, index, len(padded) - 1)
    pad = count - len(plan.step)
    grab = lambda a, fill: np.concatenate([a, np.full((pad,) + a.shape[1:], fill, a.dtype)])
    latent_dim = params.decoder[0][0].shape[0]
    eps = jax.random.normal(e_key, (count, size, latent_dim))
    values = _sumo_microbatches(params, grab(padded[rows], 0.0), eps, grab(plan.segment_ids, batch_size),
                                grab(plan.positions, 0), int(min_terms), float(alpha), float(b))
    out = np.empty(steps * batch_size, np.float32)
    out[index[real]] = np.asarray(values)[:len(plan.step)][real]
    return out[:len(x)]


# --- evaluation ---------------------------------------------------------------------------

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
    expectation, this is slightly low, by a gap that shrinks like $1/K$. Returns
    ``(mean, standard error, x)``.
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


_iwae_log_prob = jax.jit(iwae_log_prob, static_argnums=3)


def evaluate_checkpoint(key, params: VAEParams, estimator: str, *, num_samples: int = 2,
                        min_terms: int = 4, num_x: int = 512, eval_samples: int = 2048) -> Checkpoint:
    """Score the sampler with its training estimator (``"iwae"`` with ``num_samples``, or
    ``"sumo"`` with ``min_terms``) and with :func:`true_reverse_kl`'s, on the same fresh draws."""
    if estimator not in ("iwae", "sumo"):
        raise ValueError(f"estimator must be 'iwae' or 'sumo', got {estimator!r}")
    x_key, own_key = jax.random.split(key)
    x, log_p, log_target = _draw_and_score(x_key, params, int(num_x), int(eval_samples))
    if estimator == "iwae":
        own = np.asarray(_iwae_log_prob(own_key, params, x, int(num_samples)))
    else:
        own = sumo_log_prob(own_key, params, x, min_terms)
    log_p, log_target = np.asarray(log_p), np.asarray(log_target)
    return Checkpoint(*_mean_se(own - log_target), *_mean_se(log_p - log_target), *_mean_se(log_p - own))


class Track(NamedTuple):
    """:func:`train_tracked`'s record: ``step`` (C,) and a :class:`Checkpoint` of (C,) arrays at
    each, the per-step training ``loss``, and the parameters at each checkpoint."""
    step: np.ndarray
    checkpoints: Checkpoint
    loss: np.ndarray
    snapshots: list


def train_tracked(key, params: VAEParams, optimizer: optax.GradientTransformation, num_steps: int,
                  num_checkpoints: int, estimator: str, *, num_samples: int = 2, batch_size: int = 32,
                  min_terms: int = 4, num_x: int = 512, eval_samples: int = 2048):
    """Train with ``"iwae"`` (:func:`~lvm_tutorial.fit` on :func:`reverse_kl_iwae_loss`) or
    ``"sumo"`` (:func:`fit_sumo`), and :func:`evaluate_checkpoint` at the start and after each
    of ``num_checkpoints`` equal segments. Returns ``(state, Track)``."""
    from .training import fit  # the book's one training loop

    if estimator not in ("iwae", "sumo"):
        raise ValueError(f"estimator must be 'iwae' or 'sumo', got {estimator!r}")
    if num_checkpoints < 1 or num_steps % num_checkpoints:
        raise ValueError(f"num_steps={num_steps} must split into num_checkpoints={num_checkpoints} equal parts")
    segment = num_steps // num_checkpoints
    loss_fn = partial(reverse_kl_iwae_loss, num_samples=num_samples, batch_size=batch_size)
    options = dict(num_samples=num_samples, min_terms=min_terms, num_x=num_x, eval_samples=eval_samples)
    key, eval_key = jax.random.split(key)
    state, losses, rows, snapshots = None, [], [evaluate_checkpoint(eval_key, params, estimator, **options)], [params]
    for c in range(num_checkpoints):
        key, train_key, eval_key = jax.random.split(key, 3)
        if estimator == "iwae":
            state, info = fit(train_key, loss_fn, params, optimizer, segment, state=state)
        else:
            state, info = fit_sumo(train_key, params, optimizer, segment, batch_size=batch_size,
                                   min_terms=min_terms, state=state)
        losses.append(np.asarray(info.loss))
        rows.append(evaluate_checkpoint(eval_key, state.params, estimator, **options))
        snapshots.append(state.params)
    table = Checkpoint(*(np.array(column) for column in zip(*rows)))
    return state, Track(np.arange(num_checkpoints + 1) * segment, table, np.concatenate(losses), snapshots)


def _x1(samples) -> np.ndarray:
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 2 or samples.shape[1] != DATA_DIM:
        raise ValueError(f"samples must be (N, 2), got shape {samples.shape}")
    return np.sort(samples[:, 1])


def x1_wasserstein(samples, scale: float = FUNNEL_SCALE) -> float:
    r"""Exact Wasserstein-1 distance between the empirical law of $x_1$ and $\mathcal N(0, \text{scale}^2)$.

    $W_1 = \int_0^1 |F_n^{-1}(u) - F^{-1}(u)|\,du$, summed in closed form over the $n$ steps of
    $F_n^{-1}$ with $\int F^{-1}(u)\,du = -\text{scale}\,\varphi(\Phi^{-1}(u))$.
    """
    x = _x1(samples)
    n = len(x)
    lo, hi = np.arange(n) / n, np.arange(1, n + 1) / n
    cut = np.clip(ndtr(x / scale), lo, hi)

    def integral(u):  # \int_0^u F^{-1}
        with np.errstate(divide="ignore", invalid="ignore"):
            q = ndtri(u)
            return np.where((u > 0) & (u < 1), -scale * np.exp(-0.5 * q * q) / math.sqrt(2 * math.pi), 0.0)

    below = x * (cut - lo) - (integral(cut) - integral(lo))
    above = (integral(hi) - integral(cut)) - x * (hi - cut)
    return float(np.sum(below + above))


def x1_ks(samples, scale: float = FUNNEL_SCALE) -> float:
    r"""Kolmogorov-Smirnov statistic $\sup_t |F_n(t) - \Phi(t/\text{scale})|$ of the $x_1$ marginal."""
    x = _x1(samples)
    n = len(x)
    cdf = ndtr(x / scale)
    return float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))


def neck_fraction(samples, threshold: float = NECK) -> float:
    """Fraction of samples in the funnel's neck, $x_1 < $ ``threshold`` (exact: ``EXACT_NECK_FRACTION``)."""
    return float(np.mean(_x1(samples) < threshold))
