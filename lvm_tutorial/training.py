r"""The one training loop of the book: ``step(key, state, batch) -> (state, info)`` under ``lax.scan``.

A loss is ``loss_fn(params, key, batch) -> scalar`` (pure; data arrives as ``batch``, never
from a closure, so a new data set does not recompile). Keys are split up front, one per step,
as in blackjax's run loops. Every chapter trains through :func:`fit`.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["TrainState", "StepInfo", "init_state", "train_step", "run_steps", "fit"]


class TrainState(NamedTuple):
    params: object
    opt_state: object


class StepInfo(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array


def init_state(params, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(params, optimizer.init(params))


def train_step(loss_fn: Callable, optimizer: optax.GradientTransformation, key, state: TrainState,
               batch) -> tuple[TrainState, StepInfo]:
    """One optimiser step on ``loss_fn(params, key, batch)``."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, key, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state), StepInfo(loss, optax.tree.norm(grads))


@partial(jax.jit, static_argnames=("loss_fn", "optimizer"))
def run_steps(loss_fn: Callable, optimizer: optax.GradientTransformation, state: TrainState,
              keys: jax.Array, data=None, indices: jax.Array | None = None
              ) -> tuple[TrainState, StepInfo]:
    """``lax.scan`` of :func:`train_step` over ``keys`` (S,).

    Step ``s`` sees the batch ``data[indices[s]]``, or all of ``data`` when ``indices`` is None
    (``data`` may itself be None when the loss samples its own batch).
    """
    def body(state, inputs):
        key, idx = inputs
        batch = data if idx is None else jax.tree.map(lambda a: a[idx], data)
        return train_step(loss_fn, optimizer, key, state, batch)

    return jax.lax.scan(body, state, (keys, indices))


def _minibatch_indices(key, num_steps: int, num_data: int, batch_size: int) -> jax.Array:
    """Each step draws ``batch_size`` distinct indices, uniformly: ``(num_steps, batch_size)``."""
    keys = jax.random.split(key, num_steps)
    return jax.vmap(lambda k: jax.random.permutation(k, num_data)[:batch_size])(keys)


def fit(key, loss_fn: Callable, params, optimizer: optax.GradientTransformation, num_steps: int,
        data=None, batch_size: int | None = None, state: TrainState | None = None):
    """Train for ``num_steps`` steps and return ``(state, info)`` with per-step ``info`` arrays.

    Args:
      key: PRNG key; split into one key per step (and one for minibatches).
      loss_fn: ``(params, key, batch) -> scalar``; must be hashable (a module-level function or
        a ``functools.partial`` of one), since it is a static argument of the jitted loop.
      params: initial parameters (ignored when ``state`` is given, to continue training).
      optimizer: an optax transformation.
      data: ``None`` (the loss draws its own batch from its key) or an array of examples along
        axis 0, from which each step takes ``batch_size`` without replacement (the whole array
        when ``batch_size`` is ``None``).
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    state = init_state(params, optimizer) if state is None else state
    step_key, batch_key = jax.random.split(key)
    keys = jax.random.split(step_key, num_steps)
    indices = None
    if data is not None and batch_size is not None:
        num_data = jax.tree.leaves(data)[0].shape[0]
        if not 1 <= batch_size <= num_data:
            raise ValueError(f"batch_size must be in [1, {num_data}], got {batch_size}")
        indices = _minibatch_indices(batch_key, num_steps, num_data, batch_size)
    return run_steps(loss_fn, optimizer, state, keys, data, indices)
