r"""The book's one training loop: a ``lax.scan`` of gradient steps, optionally over micro-batches.

Every trainer is a use of :func:`run_steps`: :func:`fit` (a loss ``loss_fn(params, key, batch)``,
one optimiser step per scanned item, as blackjax's run loops do) and the exact SUMO trainer of
:mod:`lvm_tutorial.sumo_training` (a step split into micro-batches whose gradients add up before
the optimiser step). A :class:`TrainState` is always ``(params, optimizer.init(params))``.

The loss and the optimiser are static arguments of the compiled loop, compared **by value**
(:func:`static_value`): a new ``functools.partial(loss, num_samples=2)`` or a new
``optax.adam(0.1)`` equal to one already used reuses its program instead of compiling again.
"""
from __future__ import annotations

import functools
import types
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

__all__ = ["TrainState", "StepInfo", "init_state", "train_step", "static_value", "run_steps",
           "run_steps_vmapped", "run_steps_sharded", "fit"]


class TrainState(NamedTuple):
    params: object
    opt_state: object


class StepInfo(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array


def init_state(params, optimizer: optax.GradientTransformation) -> TrainState:
    """``TrainState(params, optimizer.init(params))``, in one compiled call (the optimiser
    compared by value, as in :func:`run_steps`)."""
    return _init_state(params, static_value(optimizer))


def train_step(loss_fn: Callable, optimizer: optax.GradientTransformation, key, state: TrainState,
               batch) -> tuple[TrainState, StepInfo]:
    """One optimiser step on ``loss_fn(params, key, batch)`` (the body :func:`fit` scans)."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, key, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state), StepInfo(loss, optax.tree.norm(grads))


# --- static arguments compared by value -----------------------------------------------------

def _value_key(obj, path: tuple = ()):
    """A hashable description of what ``obj`` computes: functions by their code, defaults and
    captured values (recursively), partials by function and arguments, containers by content,
    concrete arrays by bytes; anything else by identity."""
    if id(obj) in path:                                    # a closure that captures itself
        return ("cycle", path.index(id(obj)))
    path = path + (id(obj),)
    key = functools.partial(_value_key, path=path)
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, type,
                                       types.BuiltinFunctionType, types.ModuleType)):
        return (type(obj), obj)
    if isinstance(obj, functools.partial):
        return ("partial", key(obj.func), key(obj.args), key(obj.keywords))
    if isinstance(obj, types.FunctionType):
        cells = []
        for cell in obj.__closure__ or ():
            try:
                cells.append(key(cell.cell_contents))
            except ValueError:                             # a cell not yet filled
                cells.append(("empty",))
        return ("function", obj.__code__, id(obj.__globals__), key(obj.__defaults__),
                key(obj.__kwdefaults__), tuple(cells))
    if isinstance(obj, types.MethodType):
        return ("method", key(obj.__func__), key(obj.__self__))
    if isinstance(obj, (tuple, list)):
        return (type(obj), tuple(key(item) for item in obj))
    if isinstance(obj, dict):
        return (dict, tuple(sorted((repr(k), key(v)) for k, v in obj.items())))
    if isinstance(obj, jax.sharding.Mesh):                  # equal devices and axes: one program
        return ("mesh", obj)
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        try:
            if jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):   # a typed key: its bits
                return ("key", str(obj.dtype), _value_key(jax.random.key_data(obj), path))
            value = np.asarray(obj)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return ("object", _Identity(obj))                # a tracer: by identity
        return ("array", value.shape, str(value.dtype), value.tobytes())
    return ("object", _Identity(obj))


class _Identity:
    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj


class static_value:
    """Wrap a callable (a loss, an optimiser) so that ``jit`` compares it by value.

    Two wrapped callables are equal when they run the same code with equal captured values,
    defaults and arguments (for example two ``optax.adam(0.1)``, or two equal ``partial``\\ s of
    one function); calling the wrapper calls the callable, and attribute access (``.init``,
    ``.update``) passes through.
    """

    def __init__(self, fn):
        self.fn = fn.fn if isinstance(fn, static_value) else fn
        self.key = _value_key(self.fn)
        self._hash = hash(self.key)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.__dict__["fn"], name)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return isinstance(other, static_value) and self.key == other.key


# --- the loop -------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("optimizer",))
def _init_state(params, optimizer) -> TrainState:
    return TrainState(params, optimizer.init(params))


@functools.partial(jax.jit, static_argnames=("grad_fn", "optimizer"))
def _scan(grad_fn, optimizer, state: TrainState, inputs, apply, context):
    def update(params, opt_state, grads):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    if apply is None:                                      # every item is a whole step
        def body(state, item):
            grads, info = grad_fn(state.params, item, context)
            return TrainState(*update(state.params, state.opt_state, grads)), info

        return jax.lax.scan(body, state, inputs)

    def body(carry, xs):
        state, acc = carry
        item, last = xs
        grads, info = grad_fn(state.params, item, context)
        acc = jax.tree.map(jnp.add, acc, grads)

        def step(state, acc):                              # the sum is complete: step, restart it
            return TrainState(*update(state.params, state.opt_state, acc)), jax.tree.map(jnp.zeros_like, acc)

        return jax.lax.cond(last, step, lambda state, acc: (state, acc), state, acc), info

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    (state, _), info = jax.lax.scan(body, (state, zeros), (inputs, apply))
    return state, info


def run_steps(grad_fn: Callable, optimizer: optax.GradientTransformation, state: TrainState,
              inputs, apply: jax.Array | None = None, context=None) -> tuple[TrainState, object]:
    """Scan ``grad_fn(params, item, context) -> (grads, info)`` over the leading axis of ``inputs``.

    With ``apply`` None every item is one optimiser step. Otherwise the items are micro-batches:
    their gradients add up, and the optimiser steps on the sum after each item where ``apply``
    (bool, same length) is True, then starts a new sum; give whole steps (the last item's
    ``apply`` True) or the trailing partial sum is dropped. ``context`` is passed unchanged to
    every item (data, a key). ``grad_fn`` and ``optimizer`` are compared by value
    (:class:`static_value`), so equal ones compile once. Returns ``(state, info)`` with ``info``
    stacked over the items.
    """
    return _scan(static_value(grad_fn), static_value(optimizer), state, inputs, apply, context)


@functools.partial(jax.jit, static_argnames=("grad_fn", "optimizer", "context_axes"))
def _scan_vmapped(grad_fn, optimizer, states, inputs, apply, context, context_axes):
    one_run = functools.partial(_scan, grad_fn, optimizer)
    return jax.vmap(one_run, in_axes=(0, 0, 0, context_axes))(states, inputs, apply, context)


def run_steps_vmapped(grad_fn: Callable, optimizer: optax.GradientTransformation, states: TrainState,
                      inputs, apply: jax.Array | None = None, context=None,
                      context_axes=0) -> tuple[TrainState, object]:
    """:func:`run_steps` for ``num_runs`` independent runs at once (seeds), vectorised with ``jax.vmap``.

    ``states``, ``inputs`` and ``apply`` carry a leading axis of size ``num_runs``; ``context_axes``
    says which leaves of ``context`` do too (``0``) and which all runs share (``None``), as
    ``vmap``'s ``in_axes`` (a tuple for a tuple context, e.g. ``(0, None, 0)``). All runs step
    together, one compiled program for all of them: run ``i`` equals ``run_steps`` on its own
    slices up to rounding. Under ``vmap`` a ``lax.cond`` or ``lax.switch`` whose predicate
    differs between runs evaluates every branch, so give ``grad_fn`` one code path per item.
    """
    return _scan_vmapped(static_value(grad_fn), static_value(optimizer), states, inputs, apply,
                         context, context_axes)


class _DeviceSum(NamedTuple):
    """``grad_fn`` on one device's share of an item, its gradients and info summed over the
    mesh axis ``axis`` (``psum``): every device then holds the whole item's sums.

    The parameters are first cast to per-device values (``pcast(..., to="varying")``), so
    that ``grad_fn``'s gradient is this device's share alone. Differentiated as replicated
    values, they would get a gradient already summed over the devices (the transpose of a
    replication is a sum; JAX's "Autodiff and sharding"), and the ``psum`` would then count
    it $R$ times, a scale that Adam's normalised step hides.
    """
    grad_fn: Callable
    axis: str

    def __call__(self, params, item, context):
        params = jax.lax.pcast(params, self.axis, to="varying")
        return jax.lax.psum(self.grad_fn(params, item, context), self.axis)


@functools.partial(jax.jit, static_argnames=("grad_fn", "optimizer", "mesh"))
def _scan_sharded(grad_fn, optimizer, mesh, state, inputs, apply, context):
    axis, = mesh.axis_names
    split = P(None, axis)

    def on_one_device(state, inputs, apply, context):      # inputs (T, 1, ...): this device's
        inputs = jax.tree.map(lambda a: a[:, 0], inputs)
        return _scan(static_value(_DeviceSum(grad_fn.fn, axis)), optimizer, state, inputs, apply,
                     context)

    return jax.shard_map(on_one_device, mesh=mesh, in_specs=(P(), split, P(), P()),
                         out_specs=(P(), P()))(state, inputs, apply, context)


def run_steps_sharded(grad_fn: Callable, optimizer: optax.GradientTransformation, state: TrainState,
                      inputs, apply: jax.Array | None = None, context=None, *,
                      mesh: jax.sharding.Mesh) -> tuple[TrainState, object]:
    r""":func:`run_steps` with every item split over the devices of a one-axis ``mesh``.

    Data parallel: every leaf of ``inputs`` is ``(T, R, ...)``, $R$ the mesh's size, and device
    $r$ computes ``grad_fn(params, item[:, r], context)`` on its share; the gradients (and the
    info) are summed over the devices, $g = \sum_r g_r$ (``jax.lax.psum`` inside
    ``jax.shard_map``), and every device applies the same optimiser step to its copy of the
    parameters, which therefore stay replicated. ``state``, ``apply`` and ``context`` are
    replicated on every device (placed there by this function; arrays already placed so are
    not copied). Returns ``(state, info)``, the state replicated, ``info`` summed over devices
    and stacked over the items. One program per ``grad_fn``, optimiser (compared by value),
    mesh and shapes.
    """
    axis, = mesh.axis_names
    state, apply, context = jax.device_put((state, apply, context), NamedSharding(mesh, P()))
    inputs = jax.device_put(inputs, NamedSharding(mesh, P(None, axis)))
    return _scan_sharded(static_value(grad_fn), static_value(optimizer), mesh, state, inputs, apply,
                         context)


def _split_leading_axis(tree, mesh: jax.sharding.Mesh):
    """Ask the compiler to split every leaf's leading axis over the mesh's one axis."""
    axis, = mesh.axis_names
    sharding = NamedSharding(mesh, P(axis))
    explicit = mesh.axis_types[0] == jax.sharding.AxisType.Explicit
    place = jax.sharding.reshard if explicit else jax.lax.with_sharding_constraint
    return jax.tree.map(lambda a: place(a, sharding), tree)


class _LossGrad(NamedTuple):
    """:func:`fit`'s ``grad_fn``: the batch ``data[indices]`` (or all of ``data``), split over
    the devices of ``mesh`` if one is given, then :func:`train_step`'s gradient and info."""
    loss_fn: Callable
    mesh: jax.sharding.Mesh | None = None

    def __call__(self, params, item, data):
        key, idx = item
        batch = data if idx is None else jax.tree.map(lambda a: a[idx], data)
        if self.mesh is not None:
            batch = _split_leading_axis(batch, self.mesh)
        loss, grads = jax.value_and_grad(self.loss_fn)(params, key, batch)
        return grads, StepInfo(loss, optax.tree.norm(grads))


def _minibatch_indices(key, num_steps: int, num_data: int, batch_size: int) -> jax.Array:
    """Each step draws ``batch_size`` distinct indices, uniformly: ``(num_steps, batch_size)``."""
    keys = jax.random.split(key, num_steps)
    return jax.vmap(lambda k: jax.random.permutation(k, num_data)[:batch_size])(keys)


def fit(key, loss_fn: Callable, params, optimizer: optax.GradientTransformation, num_steps: int,
        data=None, batch_size: int | None = None, state: TrainState | None = None,
        mesh: jax.sharding.Mesh | None = None):
    """Train for ``num_steps`` steps and return ``(state, info)`` with per-step ``info`` arrays.

    Args:
      key: PRNG key; split into one key per step (and one for minibatches).
      loss_fn: ``(params, key, batch) -> scalar``, pure; compared by value, so an equal
        ``functools.partial`` of the same function does not recompile.
      params: initial parameters (ignored when ``state`` is given, to continue training).
      optimizer: an optax transformation (an equal new one does not recompile either).
      data: ``None`` (the loss draws its own batch from its key) or an array of examples along
        axis 0, from which each step takes ``batch_size`` without replacement (the whole array
        when ``batch_size`` is ``None``).
      mesh: None (one device), or a one-axis mesh of $R$ devices
        (:func:`~lvm_tutorial.sharding.data_mesh`): each step's batch is split over them along
        its first axis ($R$ must divide it) and the rest left to the compiler (``jit`` with
        shardings: the parameters and ``data`` replicated, the gradient's sum over the batch
        becomes a sum across devices). The same computation, so the same results up to
        rounding, random draws included (``jax_threefry_partitionable``).
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
    if mesh is not None:
        if data is None:
            raise ValueError("a mesh splits the data's batch over devices: give data")
        num_data = jax.tree.leaves(data)[0].shape[0]
        if (batch_size or num_data) % mesh.size:
            raise ValueError(f"the batch of {batch_size or num_data} examples must split evenly "
                             f"over {mesh.size} devices")
        state, keys, indices, data = jax.device_put((state, keys, indices, data),
                                                    NamedSharding(mesh, P()))
    return run_steps(_LossGrad(loss_fn, mesh), optimizer, state, (keys, indices), context=data)
