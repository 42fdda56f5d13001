r"""The exact SUMO trainer: any amortised latent-variable model, a fresh $J$ per example per step.

Luo et al. (2020) train a model $p_\theta(x) = \int p_\theta(x, z)\,dz$ with SUMO, an unbiased
estimator of $\log p_\theta(x)$ built from $m + J$ importance samples of an encoder
$q_\phi(z \mid x)$, $J$ random. Two uses, as :class:`DensityEstimation` and
:class:`DensityMatching`:

- density estimation on data: the decoder maximises $\frac1B \sum_b \mathrm{SUMO}(x_b)$;
- density matching to an unnormalised target $p^*$: with $x_b \sim p_\theta$ drawn by
  reparameterisation, the decoder minimises the reverse KL estimate
  $\frac1B \sum_b [\mathrm{SUMO}(x_b) - \log p^*(x_b)]$.

In both, the encoder minimises $\frac1B\sum_b \mathrm{SUMO}(x_b)^2$, SUMO's variance up to a
constant (the paper's choice). With ``estimator=IWAE(K)`` the same machinery trains with
$\mathrm{IWAE}_K$ instead (the encoder then maximises the bound), so that a comparison at equal
expected cost measures the estimators, not the code around them.

How (:mod:`lvm_tutorial.packed`): every example's $J$ is drawn up front; the examples of a step
are laid end to end in a buffer (a few sizes, :func:`buffer_rungs`), a step that overflows the
largest is split into micro-batches whose gradients add up before the optimiser step, and the micro-batches
run in :func:`lvm_tutorial.training.run_steps`, the book's one training scan. All randomness is
keyed by (step, example, slot), so the results do not depend on the buffer or chunk sizes.
One backward pass per micro-batch serves both networks: both objectives reach the slots only
through the encoder's outputs and $x$, and per example the encoder's cotangent is the
decoder's times $2\,\mathrm{SUMO}_b$ (for SUMO; $-1$ for IWAE, up to the objective's sign).
"""
from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from .estimators import IWAE, SUMO, sample_num_terms
from .packed import pack_microbatches, packed_estimates
from .sharding import DATA_AXIS, LoadBalance, assign_examples, load_balance, pack_per_device
from .training import TrainState, init_state, run_steps, run_steps_sharded, run_steps_vmapped
from .vae import LatentModel, VAEParams

__all__ = ["DensityEstimation", "DensityMatching", "SumoInfo", "microbatch_grads", "fit_sumo",
           "fit_sumo_seeds", "packed_log_prob", "draw_lengths", "buffer_rungs", "single_buffer"]

_LOG_2PI = math.log(2.0 * math.pi)


class DensityEstimation(NamedTuple):
    """Maximum likelihood on data: the decoder maximises the estimate of $\\log p_\\theta(x_b)$."""


class DensityMatching(NamedTuple):
    """Reverse KL to ``log_target_fn`` (unnormalised, ``x`` (D,) to a scalar); ``sample_fn(decoder,
    key) -> x`` (D,) draws $x \\sim p_\\theta$ differentiably in the decoder's parameters."""
    sample_fn: Callable
    log_target_fn: Callable


def _example_keys(noise_key, step, examples):
    """One key per example of ``step``: the randomness of (step, example) whatever the packing."""
    step_key = jax.random.fold_in(noise_key, step)
    return jax.vmap(jax.random.fold_in, (None, 0))(step_key, examples)


def _slot_log_weights(log_joint_fn, decoder, q_mean, q_log_scale, x, eps, segment_ids):
    r"""$\log w_t = \log p_\theta(x_e, z_t) - \log q_\phi(z_t \mid x_e)$, $z_t = \mu_\phi(x_e) + s_\phi(x_e) \odot \epsilon_t$,
    for every slot $t$ of seat $e$ = ``segment_ids[t]`` (0 on padding). Shapes: ``q_mean`` (B, d),
    ``x`` (B, D), ``eps`` (L, d), ``segment_ids`` (L,); returns (L,)."""
    batch, latent_dim = q_mean.shape
    member = (segment_ids[:, None] == jnp.arange(batch)[None, :]).astype(eps.dtype)     # (L, B)
    # gathering by a one-hot product: its transpose is the segment sum the gradient needs
    per_slot = member @ jnp.concatenate(
        [q_mean, jnp.exp(q_log_scale), jnp.sum(q_log_scale, -1, keepdims=True), x], axis=-1)
    mean, scale = per_slot[:, :latent_dim], per_slot[:, latent_dim:2 * latent_dim]
    z = mean + scale * eps
    log_q = jnp.sum(-0.5 * eps * eps, -1) - per_slot[:, 2 * latent_dim] - 0.5 * latent_dim * _LOG_2PI
    log_w = log_joint_fn(decoder, per_slot[:, 2 * latent_dim + 1:], z) - log_q
    return jnp.where(segment_ids < batch, log_w, 0.0)


def _slot_noise(keys, segment_ids, positions, latent_dim: int):
    """$\\epsilon_t \\sim \\mathcal N(0, I_d)$ for slot $t$, keyed by its example and position."""
    seat = jnp.minimum(segment_ids, keys.shape[0] - 1)
    slot_keys = jax.vmap(jax.random.fold_in)(keys[seat], positions + 1)
    return jax.vmap(lambda k: jax.random.normal(k, (latent_dim,)))(slot_keys)


def microbatch_grads(model: LatentModel, objective, estimator: SUMO | IWAE, params: VAEParams,
                     x_or_keys, eps, segment_ids, positions, example_weight):
    r"""Gradients of one micro-batch's share of both objectives, and the two objectives' values.

    ``x_or_keys``: the data ``x`` (B, D) for :class:`DensityEstimation`, or one key per example
    for :class:`DensityMatching` (its $x_b$ = ``sample_fn(decoder, key_b)``). ``eps`` (L, d) is
    the slots' noise; with $w_b$ = ``example_weight`` (B,) the decoder's objective is
    $\sum_b w_b [\pm\widehat{\log p}(x_b) - \log p^*(x_b)]$ and the encoder's
    $\sum_b w_b \mathrm{SUMO}_b^2$ (or $-\sum_b w_b \mathrm{IWAE}_b$). Returns
    ``(grads, decoder objective, encoder objective)``.
    """
    matching = isinstance(objective, DensityMatching)
    batch = example_weight.shape[0]
    if matching:
        draw = lambda decoder: jax.vmap(objective.sample_fn, (None, 0))(decoder, x_or_keys)
        x, x_vjp = jax.vjp(draw, params.decoder)
    else:
        x = x_or_keys
    (q_mean, q_log_scale), encoder_vjp = jax.vjp(model.encode_fn, params.encoder, x)

    def estimates(decoder, q_mean, q_log_scale, x):
        log_w = _slot_log_weights(model.log_joint_fn, decoder, q_mean, q_log_scale, x, eps, segment_ids)
        return packed_estimates(log_w, segment_ids, positions, batch, estimator)

    values, slots_vjp = jax.vjp(estimates, params.decoder, q_mean, q_log_scale, x)
    sign = 1.0 if matching else -1.0                          # the decoder minimises sign * estimate
    g_decoder, g_mean, g_log_scale, g_x = slots_vjp(sign * example_weight)
    # per example, the encoder's cotangent over the decoder's: d(objective)/d(estimate) / sign
    ratio = (2.0 * values if isinstance(estimator, SUMO) else -jnp.ones_like(values)) * sign
    encoder_cotangent = (ratio[:, None] * g_mean, ratio[:, None] * g_log_scale)
    if matching:
        # one batched pass back through the encoder: its own objective, and the decoder's path via x
        g_encoders, g_xs = jax.vmap(encoder_vjp)(jax.tree.map(
            lambda scaled, plain: jnp.stack([scaled, plain]), encoder_cotangent, (g_mean, g_log_scale)))
        g_encoder, g_x_through_q = jax.tree.map(lambda a: a[0], g_encoders), g_xs[1]
        log_target, g_target = jax.vmap(jax.value_and_grad(objective.log_target_fn))(x)
        (g_decoder_x,) = x_vjp(g_x + g_x_through_q - example_weight[:, None] * g_target)
        g_decoder = jax.tree.map(jnp.add, g_decoder, g_decoder_x)
    else:
        g_encoder, _ = encoder_vjp(encoder_cotangent)
        log_target = jnp.zeros_like(values)
    encoder_objective = jnp.square(values) if isinstance(estimator, SUMO) else -values
    return (VAEParams(g_encoder, g_decoder), jnp.sum(example_weight * (sign * values - log_target)),
            jnp.sum(example_weight * encoder_objective))


class _PackedGrad(NamedTuple):
    """:func:`fit_sumo`'s ``grad_fn`` for :func:`~lvm_tutorial.training.run_steps`: one micro-batch.

    Its buffer holds ``rungs[-1]`` slots, filled from the front; the gradient is computed on the
    first ``r`` of them, ``r`` the smallest rung that holds the filled slots (``lax.switch``:
    only that branch runs), so a step that needs 260 slots does not pay for 512. Seat $i$ holds
    example ``first + i`` of the step, or, when ``first`` is a vector (one device's share of a
    sharded plan, :func:`~lvm_tutorial.sharding.pack_per_device`), example ``first[i]``.
    """
    model: LatentModel
    objective: object
    estimator: object
    rungs: tuple

    def __call__(self, params, item, context):
        segment_ids, positions, example_weight, step, first = item
        noise_key, data, indices = context
        batch = example_weight.shape[0]
        examples = first + jnp.arange(batch) if jnp.ndim(first) == 0 else first
        keys = _example_keys(noise_key, step, examples)
        latent_dim = params.decoder[0][0].shape[0]
        if isinstance(self.objective, DensityMatching):
            x_or_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 0)
        else:
            x_or_keys = data[indices[step, jnp.minimum(examples, indices.shape[1] - 1)]]

        def on_slots(size):
            def grads(segment_ids, positions):
                seg, pos = segment_ids[:size], positions[:size]
                eps = _slot_noise(keys, seg, pos, latent_dim)
                return microbatch_grads(self.model, self.objective, self.estimator, params, x_or_keys,
                                        eps, seg, pos, example_weight)
            return grads

        filled = jnp.sum(segment_ids < batch)
        rung = jnp.searchsorted(jnp.asarray(self.rungs), filled)
        grads, decoder_loss, encoder_loss = jax.lax.switch(
            rung, [on_slots(size) for size in self.rungs], segment_ids, positions)
        return grads, (decoder_loss, encoder_loss)


class SumoInfo(NamedTuple):
    """Per step: ``loss`` the decoder's objective, ``encoder_loss`` the encoder's, and
    ``num_terms`` the $J$ of every example ``(steps, B)`` (None for IWAE); ``load`` the work of
    each device (:class:`~lvm_tutorial.sharding.LoadBalance`, None without a mesh)."""
    loss: np.ndarray
    encoder_loss: np.ndarray
    num_terms: np.ndarray | None
    load: LoadBalance | None = None


@partial(jax.jit, static_argnames=("num_steps", "batch_size", "tail"))
def _draw_num_terms(key, num_steps: int, batch_size: int, tail):
    steps = jnp.arange(num_steps)
    return jax.vmap(lambda s: sample_num_terms(jax.random.fold_in(key, s), (batch_size,), tail))(steps)


def draw_lengths(key, estimator: SUMO | IWAE, num_steps: int, batch_size: int):
    """Slots per example ``(num_steps, batch_size)``: $m + J$ with $J$ drawn per step from
    ``fold_in(key, step)`` for SUMO, $K$ = ``num_samples`` for IWAE; and the $J$ (or None)."""
    if isinstance(estimator, IWAE):
        return np.full((num_steps, batch_size), int(estimator.num_samples)), None
    num_terms = np.asarray(_draw_num_terms(key, int(num_steps), int(batch_size), estimator.tail))
    return int(estimator.min_terms) + num_terms, num_terms


@lru_cache(maxsize=64)
def buffer_rungs(estimator: SUMO | IWAE, batch_size: int) -> tuple[int, ...]:
    r"""The buffer sizes a micro-batch may use, smallest first (multiples of 32).

    IWAE: one, $B K$. SUMO: the 50 %, 80 %, 95 % and 99.5 % quantiles of a step's slot count
    $\sum_b (m + J_b)$, from $2^{14}$ simulated steps (a fixed key: the same rungs on every
    call). A step above the largest rung is split into micro-batches.
    """
    if isinstance(estimator, IWAE):
        return (int(batch_size) * int(estimator.num_samples),)
    lengths, _ = draw_lengths(jax.random.key(0), estimator, 1 << 14, batch_size)
    totals = np.quantile(lengths.sum(axis=1), [0.5, 0.8, 0.95, 0.995])
    return tuple(sorted({32 * -(-int(total) // 32) for total in totals}))


def _rungs(estimator: SUMO | IWAE, lengths: np.ndarray, rungs, batch_size: int) -> tuple[int, ...]:
    """``rungs`` (by default :func:`buffer_rungs`), with one more, a multiple of 128, when an
    example alone needs more than the largest."""
    rungs = tuple(buffer_rungs(estimator, batch_size) if rungs is None else sorted(int(r) for r in rungs))
    longest = int(lengths.max())
    return rungs if longest <= rungs[-1] else rungs + (128 * -(-longest // 128),)


@partial(jax.jit, static_argnames=("num_steps", "num_data", "batch_size"))
def _minibatches(key, num_steps: int, num_data: int, batch_size: int):
    """Step ``s`` takes ``batch_size`` distinct rows, drawn from ``fold_in(key, s)``."""
    draw = lambda s: jax.random.permutation(jax.random.fold_in(key, s), num_data)[:batch_size]
    return jax.vmap(draw)(jnp.arange(num_steps))


_split3 = jax.jit(lambda key: tuple(jax.random.split(key, 3)))


def fit_sumo(key, model: LatentModel, params: VAEParams, optimizer: optax.GradientTransformation,
             num_steps: int, *, objective=DensityEstimation(), estimator: SUMO | IWAE = SUMO(),
             data=None, batch_size: int = 32, state: TrainState | None = None,
             rungs: tuple[int, ...] | None = None, chunk_size: int = 128,
             mesh: jax.sharding.Mesh | None = None, balance: bool = True) -> tuple[TrainState, SumoInfo]:
    r"""Train ``model`` with exact SUMO (or IWAE): every example of every step gets its own
    $J$ and all its $m + J$ samples, no cap.

    Args:
      key: PRNG key; the run's randomness is keyed by (step, example, slot) from it.
      model: a :class:`~lvm_tutorial.vae.LatentModel`; ``params`` its :class:`~lvm_tutorial.vae.VAEParams`
        (ignored when ``state`` is given).
      optimizer: an optax transformation (compared by value: an equal new one does not recompile).
      num_steps: optimiser steps, each on ``batch_size`` examples.
      objective: :class:`DensityEstimation` (then ``data`` (N, D): each step takes
        ``batch_size`` distinct rows) or :class:`DensityMatching` (the model draws its own $x$).
      estimator: :class:`~lvm_tutorial.estimators.SUMO` (``min_terms``, ``tail``) or
        :class:`~lvm_tutorial.estimators.IWAE`.
      state: a :class:`~lvm_tutorial.training.TrainState` to continue from.
      rungs: the buffer sizes of :func:`buffer_rungs` (a micro-batch holds the largest, and
        computes on the smallest that fits); chunk_size: micro-batches per compiled call. Neither
        changes the results beyond rounding. One program is compiled per pair, and one more only
        for an example whose $m + J$ alone exceeds the largest rung (for the default tail and
        $B = 32$, $P(J > 380)$ is about $10^{-17}$ per example).
      mesh: a one-axis mesh of $R$ devices (:func:`~lvm_tutorial.sharding.data_mesh`), or None
        for one device. With a mesh each step's examples are split over the devices, $B / R$
        each (``batch_size`` a multiple of $R$), the parameters replicated, and the gradients
        summed across devices before each optimiser step
        (:func:`~lvm_tutorial.training.run_steps_sharded`); the rungs are then those of
        $B / R$ examples. balance: assign the examples so as to even out the slots per device
        (:func:`~lvm_tutorial.sharding.assign_examples`), else contiguously. The results
        equal those without a mesh up to rounding, whatever the assignment.

    Returns:
      ``(state, SumoInfo)``; with a mesh, ``info.load`` measures the work per device.
    """
    num_steps, batch_size = int(num_steps), int(batch_size)
    _check_arguments(num_steps, batch_size, chunk_size, objective, data, estimator)
    k_key, noise_key, batch_key = _split3(key)
    lengths, num_terms = draw_lengths(k_key, estimator, num_steps, batch_size)
    indices = None
    if data is not None:
        indices = _minibatches(batch_key, num_steps, data.shape[0], batch_size)
    state = init_state(params, optimizer) if state is None else state
    if mesh is not None:
        return _fit_sharded(mesh, balance, model, objective, estimator, optimizer, state, lengths,
                            num_terms, rungs, chunk_size, (noise_key, data, indices))
    rungs = _rungs(estimator, lengths, rungs, batch_size)
    plan = pack_microbatches(lengths, rungs[-1])
    grad_fn = _PackedGrad(model, objective, estimator, rungs)
    decoder_losses, encoder_losses = [], []
    for items, apply, used in _chunks(plan, chunk_size, batch_size):
        state, (dec, enc) = run_steps(grad_fn, optimizer, state, items, apply, (noise_key, data, indices))
        decoder_losses.append(np.asarray(dec)[:used])
        encoder_losses.append(np.asarray(enc)[:used])
    return state, _info(plan, decoder_losses, encoder_losses, num_steps, num_terms)


def _fit_sharded(mesh, balance, model, objective, estimator, optimizer, state, lengths, num_terms,
                 rungs, chunk_size, context) -> tuple[TrainState, SumoInfo]:
    """:func:`fit_sumo`'s loop on a mesh: each device packs its own examples."""
    if mesh.axis_names != (DATA_AXIS,):
        raise ValueError(f"mesh must have the one axis {DATA_AXIS!r}, got {mesh.axis_names}")
    num_steps, batch_size = lengths.shape
    assignment = assign_examples(lengths, mesh.size, balance)
    seats = assignment.shape[2]
    rungs = _rungs(estimator, lengths, rungs, seats)
    plan = pack_per_device(lengths, assignment, rungs[-1])
    grad_fn = _PackedGrad(model, objective, estimator, rungs)
    context = jax.device_put(context, NamedSharding(mesh, P()))       # copied once, not per call
    decoder_losses, encoder_losses = [], []
    for items, apply, used in _chunks(plan, chunk_size, seats):
        segment_ids, positions, example_weight, step, first = items
        step = np.broadcast_to(step[:, None], first.shape[:2])       # every leaf (T, R, ...)
        state, (dec, enc) = run_steps_sharded(grad_fn, optimizer, state, (
            segment_ids, positions, example_weight, step, first), apply, context, mesh=mesh)
        decoder_losses.append(np.asarray(dec)[:used])
        encoder_losses.append(np.asarray(enc)[:used])
    info = _info(plan, decoder_losses, encoder_losses, num_steps, num_terms)
    return state, info._replace(load=load_balance(lengths, assignment, plan, rungs))


def _check_arguments(num_steps, batch_size, chunk_size, objective, data, estimator):
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if int(chunk_size) < batch_size:
        raise ValueError(f"chunk_size must be at least batch_size={batch_size} (a step may need one "
                         f"micro-batch per example), got {chunk_size}")
    if (data is None) == isinstance(objective, DensityEstimation):
        raise ValueError("DensityEstimation needs data; DensityMatching draws its own (data=None)")
    if isinstance(estimator, SUMO) and int(estimator.min_terms) < 1:
        raise ValueError(f"min_terms must be at least 1, got {estimator.min_terms}")
    if data is not None and not 1 <= batch_size <= data.shape[0]:
        raise ValueError(f"batch_size must be in [1, {data.shape[0]}], got {batch_size}")


def _chunks(plan, chunk_size: int, batch_size: int):
    """The plan's micro-batches in calls of ``chunk_size`` items, whole steps per call (no
    gradient is left half-summed between calls), each padded with empty items (no example, no
    optimiser step): yields ``(items, apply, number of real items)``."""
    bounds, start, total = [0], 0, len(plan.step)
    while start < total:
        end = min(start + chunk_size, total)
        while end < total and plan.step[end - 1] == plan.step[end]:
            end -= 1
        bounds.append(end)
        start = end
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        pad = chunk_size - (hi - lo)
        grab = lambda a, fill: np.concatenate([a[lo:hi], np.full((pad,) + a.shape[1:], fill, a.dtype)])
        items = (grab(plan.segment_ids, batch_size), grab(plan.positions, 0),
                 grab(plan.example_weight, 0.0), grab(plan.step, 0), grab(plan.first, 0))
        yield items, grab(plan.last, False), hi - lo


def _info(plan, decoder_losses, encoder_losses, num_steps, num_terms) -> SumoInfo:
    """Per-step losses: each micro-batch's share summed into its step."""
    loss = np.bincount(plan.step, np.concatenate(decoder_losses), minlength=num_steps)
    encoder_loss = np.bincount(plan.step, np.concatenate(encoder_losses), minlength=num_steps)
    return SumoInfo(loss.astype(np.float32), encoder_loss.astype(np.float32), num_terms)


@lru_cache(maxsize=64)
def single_buffer(estimator: SUMO | IWAE, batch_size: int) -> int:
    r"""The one buffer size for :func:`fit_sumo_seeds`: of the :func:`buffer_rungs`, the one
    that minimises the expected slots computed per step, $L \cdot \mathbb E[\text{micro-batches}]$
    (under ``vmap`` every item computes the whole buffer)."""
    rungs = buffer_rungs(estimator, batch_size)
    if len(rungs) == 1:
        return rungs[0]
    lengths, _ = draw_lengths(jax.random.key(0), estimator, 1 << 12, batch_size)
    # an example longer than the buffer is rare; fit_sumo_seeds enlarges the buffer for it
    cost = [size * len(pack_microbatches(np.minimum(lengths, size), size).step) for size in rungs]
    return rungs[int(np.argmin(cost))]


def fit_sumo_seeds(keys, model: LatentModel, params: VAEParams, optimizer: optax.GradientTransformation,
                   num_steps: int, *, objective=DensityEstimation(), estimator: SUMO | IWAE = SUMO(),
                   data=None, batch_size: int = 32, state: TrainState | None = None,
                   buffer: int | None = None, chunk_size: int = 128) -> tuple[TrainState, SumoInfo]:
    r""":func:`fit_sumo` for several runs at once, vectorised over seeds with ``jax.vmap``.

    Run ``i`` is ``fit_sumo(keys[i], model, params[i], ...)``: the same draws of $J$, the same
    noise and minibatches, equal up to rounding. Every run keeps its own packing plan; a call
    takes ``chunk_size`` micro-batches of every run (a run with fewer pads with empty ones), so
    all runs share one compiled program
    (:func:`~lvm_tutorial.training.run_steps_vmapped`). One buffer of ``buffer`` slots
    (:func:`single_buffer` by default) replaces the rungs: under ``vmap`` a switch whose branch
    differs between runs would compute every branch.

    Args:
      keys: ``(num_runs,)`` PRNG keys, one per run.
      params: :class:`~lvm_tutorial.vae.VAEParams` whose leaves have a leading axis ``num_runs``
        (e.g. ``jax.vmap(init)(keys)``), ignored when ``state`` (stacked the same way) is given.
      The other arguments as :func:`fit_sumo`; ``data`` is shared by all runs.

    Returns:
      ``(state, SumoInfo)``, each leaf with a leading axis ``num_runs`` (``loss`` ``(num_runs, num_steps)``).
    """
    num_steps, batch_size = int(num_steps), int(batch_size)
    _check_arguments(num_steps, batch_size, chunk_size, objective, data, estimator)
    runs = len(keys)
    split = [_split3(k) for k in keys]
    drawn = [draw_lengths(k_key, estimator, num_steps, batch_size) for k_key, _, _ in split]
    longest = max(int(lengths.max()) for lengths, _ in drawn)
    buffer = single_buffer(estimator, batch_size) if buffer is None else int(buffer)
    buffer = buffer if longest <= buffer else 128 * -(-longest // 128)
    plans = [pack_microbatches(lengths, buffer) for lengths, _ in drawn]
    noise_keys = jnp.stack([noise_key for _, noise_key, _ in split])
    indices = None
    if data is not None:
        indices = jnp.stack([_minibatches(b_key, num_steps, data.shape[0], batch_size)
                             for _, _, b_key in split])
    state = jax.vmap(lambda p: init_state(p, optimizer))(params) if state is None else state
    grad_fn = _PackedGrad(model, objective, estimator, (buffer,))
    chunks = [list(_chunks(plan, chunk_size, batch_size)) for plan in plans]
    empty = _empty_chunk(chunk_size, buffer, batch_size)
    decoder_losses, encoder_losses = [[] for _ in range(runs)], [[] for _ in range(runs)]
    for c in range(max(len(run) for run in chunks)):
        parts = [run[c] if c < len(run) else empty for run in chunks]
        items = tuple(np.stack(leaves) for leaves in zip(*(items for items, _, _ in parts)))
        apply = np.stack([apply for _, apply, _ in parts])
        state, (dec, enc) = run_steps_vmapped(grad_fn, optimizer, state, items, apply,
                                              (noise_keys, data, indices), (0, None, 0))
        dec, enc = np.asarray(dec), np.asarray(enc)
        for r, (_, _, used) in enumerate(parts):
            decoder_losses[r].append(dec[r, :used])
            encoder_losses[r].append(enc[r, :used])
    infos = [_info(plan, dec, enc, num_steps, terms)
             for plan, dec, enc, (_, terms) in zip(plans, decoder_losses, encoder_losses, drawn)]
    num_terms = None if infos[0].num_terms is None else np.stack([i.num_terms for i in infos])
    return state, SumoInfo(np.stack([i.loss for i in infos]), np.stack([i.encoder_loss for i in infos]),
                           num_terms)


def _empty_chunk(chunk_size: int, buffer: int, batch_size: int):
    """A call's worth of items with no example in them and no optimiser step."""
    items = (np.full((chunk_size, buffer), batch_size, np.int32), np.zeros((chunk_size, buffer), np.int32),
             np.zeros((chunk_size, batch_size), np.float32), np.zeros(chunk_size, np.int32),
             np.zeros(chunk_size, np.int32))
    return items, np.zeros(chunk_size, bool), 0


@partial(jax.jit, static_argnames=("model", "estimator"))
def _packed_values(model, estimator, params, noise_key, x, segment_ids, positions, step, first):
    """Forward only: every seat's estimate, micro-batch by micro-batch; ``x`` (T, B, D) -> (T, B)."""
    latent_dim = params.decoder[0][0].shape[0]

    def one(args):
        x_t, seg, pos, step_t, first_t = args
        keys = _example_keys(noise_key, step_t, first_t + jnp.arange(x_t.shape[0]))
        eps = _slot_noise(keys, seg, pos, latent_dim)
        q_mean, q_log_scale = model.encode_fn(params.encoder, x_t)
        log_w = _slot_log_weights(model.log_joint_fn, params.decoder, q_mean, q_log_scale, x_t, eps, seg)
        return packed_estimates(log_w, seg, pos, x_t.shape[0], estimator)

    return jax.lax.map(one, (x, segment_ids, positions, step, first))


def packed_log_prob(key, model: LatentModel, params: VAEParams, x, estimator: SUMO | IWAE = SUMO(), *,
                    batch_size: int = 32) -> np.ndarray:
    r"""Estimates of $\log p_\theta(x_n)$ for the rows of ``x`` (N, D), computed in the packed
    buffers of :func:`fit_sumo`: SUMO with a fresh $J$ for each row (unbiased, no cap), or IWAE.
    Row $n$ is example ``n % batch_size`` of step ``n // batch_size``. Returns ``(N,)``."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be (N, D), got shape {x.shape}")
    steps = -(-len(x) // batch_size)
    k_key, noise_key = jax.random.split(key)
    lengths, _ = draw_lengths(k_key, estimator, steps, batch_size)
    plan = pack_microbatches(lengths, _rungs(estimator, lengths, None, batch_size)[-1])
    # Two padded shapes at most (a run rarely needs twice as many buffers as steps): few compiles.
    count = 2 * steps if len(plan.step) <= 2 * steps else batch_size * steps
    seats = np.arange(batch_size)
    index = plan.step[:, None] * batch_size + plan.first[:, None] + seats[None, :]       # (T, B)
    real = plan.example_weight > 0
    padded = np.concatenate([x, np.repeat(x[:1], steps * batch_size - len(x) + 1, axis=0)])
    rows = np.where(real, index, len(padded) - 1)
    pad = count - len(plan.step)
    grab = lambda a, fill: np.concatenate([a, np.full((pad,) + a.shape[1:], fill, a.dtype)])
    values = _packed_values(model, estimator, params, noise_key, grab(padded[rows], 0.0),
                            grab(plan.segment_ids, batch_size), grab(plan.positions, 0),
                            grab(plan.step, 0), grab(plan.first, 0))
    out = np.empty(steps * batch_size, np.float32)
    out[index[real]] = np.asarray(values)[:len(plan.step)][real]
    return out[:len(x)]
