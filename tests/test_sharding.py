"""Sharded training: the same seed gives the same run on 1, 2 or 4 devices, SUMO's uneven work is
balanced, and a sharded run compiles its training program once.

The tests that need several devices run in a subprocess with four forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, ``JAX_PLATFORMS=cpu``), so that the rest
of the suite keeps its one device: ``test_the_device_tests_pass_on_four_host_devices`` launches
them; in the main process they are skipped.
"""
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from lvm_tutorial import funnel as F
from lvm_tutorial import sumo_training as S
from lvm_tutorial import training as T
from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.estimators import IWAE, SUMO
from lvm_tutorial.sharding import assign_examples, data_mesh, load_balance, pack_per_device
from lvm_tutorial.vae import latent_model, vae_init

FOUR = jax.device_count() >= 4
needs_four = pytest.mark.skipif(not FOUR, reason="run by test_the_device_tests_pass_on_four_host_devices")

FUNNEL_PARAMS = F.sampler_init(jax.random.key(0), latent_dim=4, hidden=16)
DIGITS = latent_model("bernoulli")
DIGITS_DATA = jnp.asarray((np.random.default_rng(1).random((40, 6)) < 0.3).astype(np.float32))
DIGITS_PARAMS = vae_init(jax.random.key(1), 6, 3, (8,), "bernoulli")
CASES = {  # name: (model, params, fit_sumo's keywords)
    "funnel": (F.SAMPLER, FUNNEL_PARAMS, dict(objective=F.MATCHING)),
    "digits": (DIGITS, DIGITS_PARAMS, dict(data=DIGITS_DATA)),
}


def train(case, estimator, key=jax.random.key(5), num_steps=20, rungs=(128,), optimizer=None,
          **kwargs):
    """``num_steps`` steps of 8 examples, Adam by default. One buffer of 128 slots (one branch
    to compile, not four; no buffer changes the results, tests/test_sumo_training.py) unless
    ``rungs`` says otherwise."""
    model, params, options = CASES[case]
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    return S.fit_sumo(key, model, params, optimizer, num_steps, estimator=estimator,
                      batch_size=8, chunk_size=16, rungs=rungs, **options, **kwargs)


def gradient(case, estimator, **kwargs):
    """The first step's gradient, as params - params after one SGD step at rate 1. Adam's
    step is blind to the gradient's scale: it hid a gradient counted once per device here
    (the 20-step Adam runs agreed), so the scale is checked on the gradient itself."""
    state, _ = train(case, estimator, num_steps=1, optimizer=optax.sgd(1.0), **kwargs)
    return jax.tree.map(jnp.subtract, CASES[case][1], state.params)


def assert_same_gradient(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.all(np.isfinite(x))
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(x))))


def largest_difference(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def assert_same_run(a, b):
    (state_a, info_a), (state_b, info_b) = a, b
    for x, y in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params)):
        assert np.all(np.isfinite(x))                  # assert_allclose takes nan == nan
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(info_a.loss, info_b.loss, rtol=1e-4, atol=1e-3)
    if info_a.num_terms is not None:
        np.testing.assert_array_equal(info_a.num_terms, info_b.num_terms)


# --- in the subprocess: four devices -------------------------------------------------------

@needs_four
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("estimator", [SUMO(2), IWAE(3)])
def test_four_devices_train_as_one(case, estimator):
    """The first step's gradient and 20 Adam steps on 4 devices (2 examples each) against one
    device: equal to rounding; negative control: another seed is another run."""
    assert_same_gradient(gradient(case, estimator), gradient(case, estimator, mesh=data_mesh(4)))
    one = train(case, estimator)
    four = train(case, estimator, mesh=data_mesh(4))
    assert_same_run(one, four)
    assert four[1].load.slots.shape == (20, 4)
    assert largest_difference(one[0].params, train(case, estimator, jax.random.key(6))[0].params) > 1e-3


@needs_four
def test_one_and_two_devices_train_as_no_mesh_whatever_the_assignment():
    one = train("funnel", SUMO(2))
    for devices in (1, 2):
        for balance in (True, False):
            assert_same_run(one, train("funnel", SUMO(2), mesh=data_mesh(devices), balance=balance))


@needs_four
def test_a_sharded_run_compiles_its_training_program_once_and_keeps_parameters_replicated():
    mesh = data_mesh(4)
    before = T._scan_sharded._cache_size()
    state, info = train("digits", SUMO(2), num_steps=40, rungs=None, mesh=mesh)   # the rungs
    assert T._scan_sharded._cache_size() == before + 1       # one program for every call
    assert info.load.micro_batches * 40 > 16                   # ... of which there were several
    with count_compilations() as again:                        # another seed, another assignment
        train("digits", SUMO(2), jax.random.key(9), num_steps=40, rungs=None, mesh=mesh,
              balance=False)
    assert again.count <= 2, again.count                       # key handling only
    for leaf in jax.tree.leaves(state.params):
        assert leaf.sharding.mesh.size == 4 and leaf.sharding.is_fully_replicated
        shards = [np.asarray(s.data) for s in leaf.addressable_shards]
        assert all(np.array_equal(shards[0], s) for s in shards)


@needs_four
def test_without_the_sum_over_devices_the_runs_differ(monkeypatch):
    """Negative control for the equality tests: each device stepping on its own share of the
    gradient (no psum). JAX refuses it as written (the state is declared replicated); with that
    check off, the run is caught by the tolerance of the equality tests."""
    one = train("funnel", SUMO(2))
    monkeypatch.setattr(T._DeviceSum, "__call__", lambda self, p, item, c: self.grad_fn(
        jax.lax.pcast(p, self.axis, to="varying"), item, c))
    jax.clear_caches()                     # the programs with the sum are cached under equal keys
    with pytest.raises(Exception, match="vma|varying|replicated|invariant"):
        train("funnel", SUMO(2), mesh=data_mesh(4))
    monkeypatch.setattr(jax, "shard_map", functools.partial(jax.shard_map, check_vma=False))
    jax.clear_caches()
    alone = train("funnel", SUMO(2), mesh=data_mesh(4))
    jax.clear_caches()
    assert largest_difference(one[0].params, alone[0].params) > 100 * 1e-4


def squared_error(params, key, batch):
    noise = 0.01 * jax.random.normal(key, params.shape)
    return jnp.mean(jnp.sum((batch - params[None] - noise[None]) ** 2, axis=-1))


POINTS = jnp.asarray(np.random.default_rng(0).normal(size=(200, 2)) + [3.0, -1.0])


@needs_four
def test_the_one_loop_splits_its_batch_over_the_devices():
    """fit with a mesh: the compiler partitions the step (it sums across devices:
    all-reduce in the program; none without a mesh, the negative control) and the run equals
    the one-device run to rounding (plain SGD: a scale error would show)."""
    one, one_info = T.fit(jax.random.key(0), squared_error, jnp.zeros(2), optax.sgd(0.1), 50,
                          data=POINTS, batch_size=20)
    four, four_info = T.fit(jax.random.key(0), squared_error, jnp.zeros(2), optax.sgd(0.1), 50,
                            data=POINTS, batch_size=20, mesh=data_mesh(4))
    np.testing.assert_allclose(one.params, four.params, rtol=1e-5)
    np.testing.assert_allclose(one_info.loss, four_info.loss, rtol=1e-5)
    assert four.params.sharding.mesh.size == 4 and four.params.sharding.is_fully_replicated

    def program(mesh):
        state = T.init_state(jnp.zeros(2), optax.adam(0.1))
        items = (jax.random.split(jax.random.key(0), 3), jnp.zeros((3, 20), jnp.int32))
        if mesh is not None:
            state, items, data = jax.device_put((state, items, POINTS), NamedSharding(mesh, P()))
        else:
            data = POINTS
        grad_fn = T.static_value(T._LossGrad(squared_error, mesh))
        return T._scan.lower(grad_fn, T.static_value(optax.adam(0.1)), state, items, None,
                             data).compile().as_text()

    assert "all-reduce" in program(data_mesh(4)) and "all-reduce" not in program(None)
    with pytest.raises(ValueError, match="split evenly"):
        T.fit(jax.random.key(0), squared_error, jnp.zeros(2), optax.adam(0.1), 2, data=POINTS,
              batch_size=18, mesh=data_mesh(4))


@needs_four
def test_a_gradient_counted_on_every_device_is_caught(monkeypatch):
    """Negative control: differentiating the replicated parameters directly gives each device
    the gradient already summed over devices (JAX transposes a replication into a sum), so
    the psum counts it four times; the package casts them to per-device values first."""
    single = gradient("funnel", SUMO(2))
    monkeypatch.setattr(jax.lax, "pcast", lambda x, axis, to: x)
    jax.clear_caches()
    fourfold = gradient("funnel", SUMO(2), mesh=data_mesh(4))
    jax.clear_caches()
    assert_same_gradient(jax.tree.map(lambda g: 4 * g, single), fourfold)
    with pytest.raises(AssertionError):
        assert_same_gradient(single, fourfold)


@needs_four
def test_bad_meshes_are_named():
    with pytest.raises(ValueError, match="split evenly"):
        S.fit_sumo(jax.random.key(0), F.SAMPLER, FUNNEL_PARAMS, optax.adam(1e-3), 2,
                   objective=F.MATCHING, batch_size=6, mesh=data_mesh(4))
    other = jax.make_mesh((4,), ("batch",))
    with pytest.raises(ValueError, match="one axis 'data'"):
        train("funnel", SUMO(2), mesh=other)
    with pytest.raises(ValueError, match="num_devices"):
        data_mesh(5)


def test_the_device_tests_pass_on_four_host_devices():
    if FOUR:
        pytest.skip("this process has the devices: the tests above ran")
    env = {name: value for name, value in os.environ.items()     # not this session's xdist worker
           if not name.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    env.update(JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           str(Path(__file__))], env=env, capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b\d+ passed, 1 skipped", done.stdout), done.stdout[-500:]   # the launcher


# --- in any process: the plan ---------------------------------------------------------------

LENGTHS, _ = S.draw_lengths(jax.random.key(1), SUMO(4), 2000, 64)


@pytest.mark.parametrize("balance", [True, False])
def test_every_example_is_computed_once_by_one_device(balance):
    assignment = assign_examples(LENGTHS, 4, balance)
    assert assignment.shape == (2000, 4, 16)
    np.testing.assert_array_equal(np.sort(assignment.reshape(2000, 64), axis=1),
                                  np.broadcast_to(np.arange(64), (2000, 64)))
    rungs = S._rungs(SUMO(4), LENGTHS, None, 16)
    plan = pack_per_device(LENGTHS, assignment, rungs[-1])
    seats = plan.example_weight > 0                                          # (T, D, 16)
    steps = np.broadcast_to(plan.step[:, None, None], seats.shape)
    got = np.zeros((2000, 64), int)
    np.add.at(got, (steps[seats], plan.first[seats]), 1)
    np.testing.assert_array_equal(got, 1)
    # each device's slots: as many as its examples need, positions 0 .. m + K - 1
    filled = plan.segment_ids < 16
    slots = np.zeros((2000, 4), int)
    np.add.at(slots, (np.broadcast_to(plan.step[:, None, None], filled.shape)[filled],
                      np.broadcast_to(np.arange(4)[None, :, None], filled.shape)[filled]), 1)
    np.testing.assert_array_equal(slots, np.take_along_axis(LENGTHS[:, None], assignment, 2).sum(2))
    assert plan.positions[filled].max() == LENGTHS.max() - 1
    np.testing.assert_allclose(np.bincount(plan.step, plan.example_weight.sum((1, 2))), 1.0, rtol=1e-5)
    assert plan.last.sum() == 2000 and plan.last[-1]


def test_balancing_lowers_the_imbalance_of_sumos_work():
    """B = 64 examples of SUMO(4) on 4 devices, 2000 steps. Measured: the busiest device's slots
    over the mean, 1.38 contiguous and 1.10 balanced; the share of computed slots that hold no
    example, 0.38 and 0.21. Greedy's guarantee: the busiest device within one example of the
    mean; negative control: the contiguous split breaks it."""
    rungs = S._rungs(SUMO(4), LENGTHS, None, 16)
    loads = {}
    for balance in (False, True):
        assignment = assign_examples(LENGTHS, 4, balance)
        loads[balance] = load_balance(LENGTHS, assignment, pack_per_device(LENGTHS, assignment, rungs[-1]),
                                      rungs)
    assert loads[True].max_over_mean < 1.15 < 1.3 < loads[False].max_over_mean
    assert loads[True].padding < 0.25 < 0.35 < loads[False].padding
    within = lambda load: np.all(load.slots.max(1) <= load.slots.mean(1) + LENGTHS.max(1))
    assert within(loads[True]) and not within(loads[False])
    np.testing.assert_array_equal(loads[True].slots.sum(1), LENGTHS.sum(1))
