r"""Data parallelism for the packed trainer: which device computes which example, and the plan.

With a mesh of $R$ devices along one axis (:func:`data_mesh`), every training step's $B$
examples are split into $R$ groups of $B / R$, one group per device; the parameters are
replicated, each device computes the gradient of its group, and the gradients are summed
across devices before one optimiser step that every device applies identically
(:func:`lvm_tutorial.training.run_steps_sharded`).

SUMO makes the groups unequal: example $b$ needs $m + J_b$ importance samples ("slots"), with
$J_b$ heavy-tailed, and a step lasts as long as its busiest device. :func:`assign_examples`
therefore chooses each step's groups to equalise the slots per device, largest example first
(the LPT rule of Graham, 1969, here with $B / R$ examples per device), and
:func:`pack_per_device` packs each device's group into its own micro-batches
(:func:`lvm_tutorial.packed.pack_microbatches`), giving every device the same number of
micro-batches per step (the short ones padded with empty items). Since all randomness is keyed
by (step, example, slot), neither the assignment nor the packing changes the result beyond
rounding. :func:`load_balance` measures the imbalance that remains.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from .packed import MicroBatches, pack_microbatches

__all__ = ["DATA_AXIS", "data_mesh", "assign_examples", "pack_per_device", "LoadBalance",
           "load_balance"]

DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None, devices=None) -> jax.sharding.Mesh:
    """A one-axis mesh named ``"data"`` over the first ``num_devices`` of ``devices`` (default
    ``jax.devices()``; all of them by default): the batch is split along it, the parameters
    replicated."""
    devices = jax.devices() if devices is None else list(devices)
    num_devices = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(f"num_devices must be in [1, {len(devices)}] (jax.devices() here), "
                         f"got {num_devices}")
    return jax.make_mesh((num_devices,), (DATA_AXIS,), devices=devices[:num_devices])


def assign_examples(lengths: np.ndarray, num_devices: int, balance: bool = True) -> np.ndarray:
    r"""Which examples each device computes, per step: ``(S, R, B / R)`` example indices.

    ``lengths`` ``(S, B)``: the slots of every example of every step. Without ``balance``,
    device $r$ takes examples $r B/R, \dots, (r+1) B/R - 1$ (the usual contiguous split).
    With it, each step's examples are taken longest first, each to the device with the fewest
    slots so far among those with fewer than $B / R$ examples (Graham's LPT rule with a
    cardinality limit): the busiest device then has at most the mean load plus one example's
    length. Each device's examples are listed in increasing order.
    """
    lengths = np.asarray(lengths)
    steps, batch = lengths.shape
    if num_devices < 1 or batch % num_devices:
        raise ValueError(f"the batch of {batch} examples must split evenly over {num_devices} devices")
    seats = batch // num_devices
    if not balance:
        return np.broadcast_to(np.arange(batch).reshape(num_devices, seats), (steps, num_devices, seats)).copy()
    order = np.argsort(-lengths, axis=1, kind="stable")                  # longest first
    load = np.zeros((steps, num_devices), np.int64)
    count = np.zeros((steps, num_devices), np.int64)
    out = np.zeros((steps, num_devices, seats), np.int64)
    rows = np.arange(steps)
    for rank in range(batch):                                            # all steps at once
        example = order[:, rank]
        device = np.argmin(np.where(count < seats, load, np.iinfo(np.int64).max), axis=1)
        out[rows, device, count[rows, device]] = example
        load[rows, device] += lengths[rows, example]
        count[rows, device] += 1
    return np.sort(out, axis=2)


def pack_per_device(lengths: np.ndarray, assignment: np.ndarray, buffer_size: int) -> MicroBatches:
    """Pack each device's examples into its own micro-batches, aligned across devices.

    Returns a :class:`~lvm_tutorial.packed.MicroBatches` with a device axis: ``segment_ids``
    and ``positions`` ``(T, R, L)``, ``example_weight`` ``(T, R, B / R)`` ($1 / B$ for a real
    example: the gradients summed over devices are the step's mean), and ``first``
    ``(T, R, B / R)`` the example index each seat holds; ``step`` and ``last`` ``(T,)`` are
    shared. Step $s$ has as many micro-batches as its busiest device needs; a device with
    fewer gets empty ones (no slot filled, weight 0).
    """
    lengths = np.asarray(lengths)
    steps, batch = lengths.shape
    _, num_devices, seats = assignment.shape
    plans = [pack_microbatches(np.take_along_axis(lengths, assignment[:, d], axis=1), buffer_size)
             for d in range(num_devices)]
    counts = np.stack([np.bincount(p.step, minlength=steps) for p in plans])     # (R, S)
    per_step = counts.max(axis=0)
    offset = np.cumsum(per_step) - per_step
    total = int(per_step.sum())
    segment_ids = np.full((total, num_devices, buffer_size), seats, np.int32)
    positions = np.zeros((total, num_devices, buffer_size), np.int32)
    example_weight = np.zeros((total, num_devices, seats), np.float32)
    first = np.zeros((total, num_devices, seats), np.int32)
    for d, plan in enumerate(plans):
        start = np.cumsum(counts[d]) - counts[d]
        row = offset[plan.step] + np.arange(len(plan.step)) - start[plan.step]
        segment_ids[row, d] = plan.segment_ids
        positions[row, d] = plan.positions
        example_weight[row, d] = np.where(plan.example_weight > 0, np.float32(1.0 / batch), 0.0)
        local = np.minimum(plan.first[:, None] + np.arange(seats)[None, :], seats - 1)
        first[row, d] = assignment[plan.step[:, None], d, local]
    step = np.repeat(np.arange(steps, dtype=np.int32), per_step)
    last = np.r_[step[1:] != step[:-1], True]
    return MicroBatches(segment_ids, positions, example_weight, last, step, first)


class LoadBalance(NamedTuple):
    """The work of each device: ``slots`` ``(S, R)`` the samples of real examples each device
    computes per step; ``max_over_mean`` $\\sum_s \\max_r / \\sum_s \\mathrm{mean}_r$ of them
    (1 when every step is even: a step lasts as long as its busiest device); ``padding`` the
    share of the devices' computed slots that hold no example (empty seats of a buffer rung,
    empty micro-batches, a device waiting for the busiest), and ``micro_batches`` per step."""
    slots: np.ndarray
    max_over_mean: float
    padding: float
    micro_batches: float


def load_balance(lengths: np.ndarray, assignment: np.ndarray, plan: MicroBatches,
                 rungs: tuple[int, ...]) -> LoadBalance:
    """Measure a plan of :func:`pack_per_device`: each micro-batch computes the smallest of
    ``rungs`` that holds its filled slots (as :mod:`~lvm_tutorial.sumo_training` does), and all
    devices wait for the largest one before summing their gradients."""
    lengths = np.asarray(lengths)
    slots = np.take_along_axis(lengths[:, None, :], assignment, axis=2).sum(axis=2)   # (S, R)
    filled = (plan.segment_ids < plan.example_weight.shape[2]).sum(axis=2)          # (T, R)
    computed = np.asarray(rungs)[np.searchsorted(rungs, filled)]
    busiest = computed.max(axis=1).sum() * slots.shape[1]
    return LoadBalance(slots, float(slots.max(axis=1).sum() / slots.mean(axis=1).sum()),
                       float(1.0 - slots.sum() / busiest), len(plan.step) / len(lengths))
