r"""Estimators of many examples packed one after another into flat buffers of log-weights.

SUMO gives every example its own random number of samples $m + J_e$. Padding every example to
the longest would waste most of the work ($\mathbb E[J]$ is about 5 while $J$ reaches hundreds), so
the examples of a training step are laid end to end in buffers of a fixed number of slots
(:func:`pack_microbatches`), and :func:`packed_estimates` computes each example's SUMO (or
IWAE) from its run of slots. Nothing here knows the model: the slots hold log-weights.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .estimators import IWAE, SUMO, log_tail_survival, segment_cumlogsumexp

__all__ = ["MicroBatches", "pack_microbatches", "packed_estimates"]


class MicroBatches(NamedTuple):
    """A packing plan: seat ``i`` of micro-batch ``t`` holds example ``first[t] + i`` of step ``step[t]``.

    ``segment_ids``/``positions`` ``(T, L)``: the seat owning each slot (``B`` for an empty
    slot) and the slot's place among that example's samples; ``example_weight`` ``(T, B)``: $1/B$
    for a real example, 0 for an empty seat; ``last`` ``(T,)``: the step's last micro-batch
    (the optimiser steps after it); ``step`` and ``first`` ``(T,)``.
    """
    segment_ids: np.ndarray
    positions: np.ndarray
    example_weight: np.ndarray
    last: np.ndarray
    step: np.ndarray
    first: np.ndarray


def pack_microbatches(lengths: np.ndarray, buffer_size: int) -> MicroBatches:
    """Pack each step's examples, in order, into as few buffers of ``buffer_size`` slots as fit.

    ``lengths`` ``(S, B)``: the number of slots of example ``b`` of step ``s`` (``m + J`` for
    SUMO), each at most ``buffer_size``. Greedy: an example opens a new micro-batch of its step
    when it does not fit in the current one.
    """
    lengths = np.asarray(lengths).astype(np.int64)
    if lengths.ndim != 2:
        raise ValueError(f"lengths must be (steps, batch), got shape {lengths.shape}")
    if lengths.min() < 1:
        raise ValueError(f"every example needs at least one slot, got {lengths.min()}")
    if lengths.max() > buffer_size:
        raise ValueError(f"buffer_size={buffer_size} is smaller than the longest example ({lengths.max()})")
    steps, batch = lengths.shape
    # one column at a time for all steps at once
    local = np.zeros((steps, batch), np.int64)          # micro-batch of each example within its step
    used, group = np.zeros(steps, np.int64), np.zeros(steps, np.int64)
    for e in range(batch):
        opens = used + lengths[:, e] > buffer_size
        group += opens
        used = np.where(opens, 0, used) + lengths[:, e]
        local[:, e] = group
    per_step = local[:, -1] + 1
    owner = ((np.cumsum(per_step) - per_step)[:, None] + local).ravel()   # global micro-batch id
    sizes = lengths.ravel()
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])          # first example of each
    count = len(starts)
    step = (starts // batch).astype(np.int32)
    first = (starts % batch).astype(np.int32)
    seat = np.arange(steps * batch) % batch - first[owner]
    begin = np.cumsum(sizes) - sizes                                       # slot of each example, run-wide
    offset = np.repeat(begin - begin[starts][owner], sizes)                # ... within its micro-batch
    slot_owner = np.repeat(owner, sizes)
    within = np.arange(sizes.sum()) - np.repeat(begin, sizes)
    segment_ids = np.full((count, buffer_size), batch, np.int32)
    positions = np.zeros((count, buffer_size), np.int32)
    segment_ids[slot_owner, offset + within] = np.repeat(seat, sizes)
    positions[slot_owner, offset + within] = within
    example_weight = np.zeros((count, batch), np.float32)
    example_weight[owner, seat] = 1.0 / batch
    last = np.r_[step[1:] != step[:-1], True]
    return MicroBatches(segment_ids, positions, example_weight, last, step, first)


def packed_estimates(log_weights: jax.Array, segment_ids: jax.Array, positions: jax.Array,
                     num_segments: int, estimator: SUMO | IWAE) -> jax.Array:
    r"""SUMO (or $\mathrm{IWAE}_K$) of every example of a packed buffer, from its run of slots.

    Example $e$ owns a contiguous run of slots (``segment_ids == e``, ``positions`` $0, 1,
    \dots$); slots with ``segment_ids == num_segments`` are padding. With the prefix log-sums
    $\ell_k = \log \sum_{i \le k} w_i$ inside the example (:func:`~lvm_tutorial.estimators.segment_cumlogsumexp`),
    $\mathrm{IWAE}_K = \ell_K - \log K$ and, for an example of $m + J_e$ slots (Luo et al., 2020),

    $$\mathrm{SUMO}_e = \ell_m - \log m + \sum_{j=1}^{J_e} \frac{1}{P(J \ge j)}
      \Big[\log\big(1 + e^{\log w_{m+j} - \ell_{m+j-1}}\big) - \log\Big(1 + \frac{1}{m+j-1}\Big)\Big],$$

    each bracket being $\mathrm{IWAE}_{m+j} - \mathrm{IWAE}_{m+j-1}$ written so that nothing
    cancels: the value of :func:`~lvm_tutorial.estimators.sumo_from_log_weights`.

    Args:
      log_weights, segment_ids, positions: ``(L,)`` each.
      num_segments: the static number of seats ``B``.
      estimator: :class:`~lvm_tutorial.estimators.SUMO` (the example's length is $m + J_e$) or
        :class:`~lvm_tutorial.estimators.IWAE` (every example has $K$ = ``num_samples`` slots).

    Returns:
      ``(num_segments,)``; 0 for an empty seat.
    """
    if log_weights.ndim != 1 or segment_ids.shape != log_weights.shape or positions.shape != log_weights.shape:
        raise ValueError("log_weights, segment_ids and positions must be 1-D of one length; got "
                         f"{log_weights.shape}, {segment_ids.shape}, {positions.shape}")
    dtype = log_weights.dtype
    member = (segment_ids[:, None] == jnp.arange(num_segments)[None, :]).astype(dtype)   # (L, B)
    valid = segment_ids < num_segments
    log_prefix = segment_cumlogsumexp(log_weights, segment_ids)
    if isinstance(estimator, IWAE):
        n = int(estimator.num_samples)
        terms = jnp.where((positions == n - 1) & valid, log_prefix - math.log(n), 0.0)
        return terms @ member
    min_terms = int(estimator.min_terms)
    if min_terms < 1:
        raise ValueError(f"min_terms must be at least 1, got {min_terms}")
    log_before = jnp.concatenate([log_prefix[:1], log_prefix[:-1]])
    j = positions - min_terms + 1
    correction = (j >= 1) & valid
    weight = jnp.exp(-log_tail_survival(jnp.where(correction, j, 1), estimator.tail)).astype(dtype)
    before = jnp.maximum(positions, 1).astype(dtype)
    delta = jax.nn.softplus(log_weights - log_before) - jnp.log1p(1.0 / before)
    first = log_prefix - math.log(min_terms)                               # IWAE_m at slot m - 1
    terms = (jnp.where(correction, weight * delta, 0.0)
             + jnp.where((positions == min_terms - 1) & valid, first, 0.0))
    return terms @ member
