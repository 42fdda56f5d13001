r"""Benchmark: exact SUMO training against IWAE at equal cost and the sources' shortcuts.

Run from the repository root: ``python bench/sumo_training.py`` (``make bench``).

Every method trains the funnel sampler of chapter 7 at the sources' configuration (encoder and
decoder with one hidden layer of 128 tanh units, latent dimension 8, batch 32, $m = 4$, Adam,
one decoder and one encoder step per iteration, both from one backward pass) for
``--iterations`` iterations, and differs only in how it handles the random number of terms $J$:

- ``exact``: :func:`lvm_tutorial.sumo_training.fit_sumo`, a fresh $J$ per example every step,
  no cap;
- ``iwae_equal_cost``: the same trainer with $\mathrm{IWAE}_K$, $K = m + \mathbb E[J]$ rounded
  (9 samples): the same expected number of samples per example, through the same machinery,
  so that the ratio of the two times per step is the price of SUMO's random $J$;
- ``static_k``: the sources' recipe done correctly: $J$ drawn every step, one per batch, and
  passed to the jitted step as a static argument, so every new $J$ compiles a new program;
- ``fixed_cap``: $m + 124$ samples per example and $J$ clipped to 124 (truncated, so biased);
- ``exact_shared_k``: the package's :func:`~lvm_tutorial.estimators.sumo` with one $J$ per batch
  (as the sources), its buffer chosen from a ladder by ``lax.switch``, trained with ``fit``.

For each: wall time of the whole run from a cold start (compilation included; this script
clears JAX's caches first, so run it as its own process), steady-state steps per second (the
same run again, everything compiled), the number of compilations (counted), and the bias of
its estimator of $\log p(x)$ on a linear-Gaussian model with a poor proposal, where
$\log p(x)$ is exact.

``--devices R`` (R > 1) also trains ``exact`` and ``iwae_equal_cost`` data-parallel on a mesh
of R devices (``fit_sumo(..., mesh=...)``), with 32 examples per device (a batch of 32 R: weak
scaling), and records the images per second per device and the scaling efficiency, images/s
on R devices over R times one device's. Where there are fewer than R devices and no
accelerator, the script restarts itself with R forced host devices
(``--xla_force_host_platform_device_count``): there the devices share the CPU's cores, so
the figures check that the sharded run works, not that it scales.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lvm_tutorial import funnel as F
from lvm_tutorial import linear_gaussian as lg
from lvm_tutorial.compilation import count_compilations
from lvm_tutorial.estimators import (IWAE, SUMO, expected_num_terms, iwae_bound, sample_num_terms,
                                     sumo, sumo_from_log_weights)
from lvm_tutorial.packed import pack_microbatches, packed_estimates
from lvm_tutorial.report import format_estimate
from lvm_tutorial.sharding import data_mesh
from lvm_tutorial.sumo_training import fit_sumo
from lvm_tutorial.targets import funnel_log_prob
from lvm_tutorial.training import TrainState, fit, init_state, train_step
from lvm_tutorial.vae import VAEParams, vae_log_weights

METHODS = ("exact", "iwae_equal_cost", "static_k", "fixed_cap", "exact_shared_k")
BATCH, MIN_TERMS, LATENT, HIDDEN = 32, 4, 8, 128
CAP = 124                      # fixed_cap: m + 124 = 128 samples per example
LEARNING_RATE = 2e-4
EQUAL_COST = round(MIN_TERMS + expected_num_terms())      # 9 samples: IWAE at SUMO's expected cost


# --- the padded objective shared by the baselines ----------------------------------------

def _split_routes(params: VAEParams) -> tuple[VAEParams, VAEParams]:
    """``(decoder route, encoder route)``: the same values, gradients reaching only one network."""
    sg = jax.lax.stop_gradient
    return VAEParams(sg(params.encoder), params.decoder), VAEParams(params.encoder, sg(params.decoder))


def _padded_objective(params, key, num_terms, size: int):
    """Both objectives with ``size`` samples per example and SUMO on the first ``m + J``.

    Value: the decoder's reverse-KL estimate; gradient: that for the decoder and
    $\\frac1B\\sum_b \\mathrm{SUMO}_b^2$'s for the encoder (one backward pass).
    """
    x_key, w_key = jax.random.split(key)
    x = F.sample_x(x_key, params, BATCH)
    dec_route, enc_route = _split_routes(params)
    keys = jax.random.split(w_key, BATCH)
    weights = jax.vmap(vae_log_weights, (0, None, 0, None))
    s_dec = sumo_from_log_weights(weights(keys, dec_route, x, size), num_terms, MIN_TERMS)
    s_enc = sumo_from_log_weights(weights(keys, enc_route, jax.lax.stop_gradient(x), size), num_terms,
                                  MIN_TERMS)
    kl = jnp.mean(s_dec - funnel_log_prob(x))
    return kl + jnp.mean(jnp.square(s_enc) - jax.lax.stop_gradient(jnp.square(s_enc)))


@partial(jax.jit, static_argnames=("optimizer", "num_terms"))
def _static_step(optimizer, state: TrainState, key, num_terms: int):
    """One step of the book's :func:`~lvm_tutorial.training.train_step` with $J$ as a static
    argument: a new $J$ is a new program."""
    loss_fn = lambda params, key, batch: _padded_objective(params, key, num_terms, MIN_TERMS + num_terms)
    state, info = train_step(loss_fn, optimizer, key, state, None)
    return state, info.loss


def capped_loss(params, key, batch=None):
    """``fixed_cap``: a $J$ per example, clipped to :data:`CAP`, in a buffer of ``m + CAP``."""
    k_key, key = jax.random.split(key)
    num_terms = jnp.minimum(sample_num_terms(k_key, (BATCH,)), CAP)
    return _padded_objective(params, key, num_terms, MIN_TERMS + CAP)


def shared_k_loss(params, key, batch=None):
    """``exact_shared_k``: :func:`~lvm_tutorial.estimators.sumo` with one $J$ for the batch."""
    x_key, w_key = jax.random.split(key)
    x = F.sample_x(x_key, params, BATCH)
    dec_route, enc_route = _split_routes(params)

    def log_weight_fn(route, points):
        def fn(k, num):
            keys = jax.random.split(k, BATCH)
            return jax.vmap(vae_log_weights, (0, None, 0, None))(keys, route, points, num)
        return fn

    # The same key draws the same J and samples for both routes: XLA computes the forward once.
    s_dec, _ = sumo(w_key, log_weight_fn(dec_route, x), MIN_TERMS, batch_shape=())
    s_enc, _ = sumo(w_key, log_weight_fn(enc_route, jax.lax.stop_gradient(x)), MIN_TERMS, batch_shape=())
    kl = jnp.mean(s_dec - funnel_log_prob(x))
    return kl + jnp.mean(jnp.square(s_enc) - jax.lax.stop_gradient(jnp.square(s_enc)))


_draw_k = jax.jit(lambda key, n: sample_num_terms(key, (n,)), static_argnums=1)
_init = jax.jit(init_state, static_argnames=("optimizer",))


def _train(method: str, key, params, optimizer, num_steps: int, plan=None, mesh=None,
           batch: int = BATCH):
    """One run of ``num_steps`` iterations; returns ``(final state, plan)`` (``plan`` lets a
    rerun reuse static_k's sequence of J, so that the rerun compiles nothing; for the
    ``fit_sumo`` methods it is the run's info). ``mesh``: data parallel, ``fit_sumo`` only."""
    if mesh is not None and method not in ("exact", "iwae_equal_cost"):
        raise ValueError(f"only exact and iwae_equal_cost run on a mesh, not {method!r}")
    if method in ("exact", "iwae_equal_cost"):
        estimator = SUMO(MIN_TERMS) if method == "exact" else IWAE(EQUAL_COST)
        state, plan = fit_sumo(key, F.SAMPLER, params, optimizer, num_steps, objective=F.MATCHING,
                               estimator=estimator, batch_size=batch, mesh=mesh)
    elif method == "static_k":
        k_key, step_key = jax.random.split(key)
        if plan is None:
            plan = [int(k) for k in np.asarray(_draw_k(k_key, num_steps))]
        state = _init(params, optimizer)
        for step_key_t, num_terms in zip(jax.random.split(step_key, num_steps), plan):
            state, _ = _static_step(optimizer, state, step_key_t, num_terms)
    elif method == "fixed_cap":
        state, _ = fit(key, capped_loss, params, optimizer, num_steps)
    elif method == "exact_shared_k":
        state, _ = fit(key, shared_k_loss, params, optimizer, num_steps)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    jax.block_until_ready(state)
    return state, plan


def run_method(method: str, num_steps: int, seed: int = 0, repeats: int = 3, mesh=None,
               batch: int = BATCH) -> dict:
    """Train with ``method`` from a cold start, then ``repeats`` times warm; time the cold run and
    the median warm run, and count the cold run's compilations (on ``mesh`` with ``batch``
    examples a step, if given)."""
    params = F.sampler_init(jax.random.key(seed), latent_dim=LATENT, hidden=HIDDEN)
    jax.block_until_ready(params)
    optimizer = optax.adam(LEARNING_RATE)
    key = jax.random.key(seed + 1)
    jax.clear_caches()
    with count_compilations() as log:
        start = time.perf_counter()
        _, plan = _train(method, key, params, optimizer, num_steps, mesh=mesh, batch=batch)
        wall = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _train(method, key, params, optimizer, num_steps, plan, mesh, batch)   # all compiled
        times.append(time.perf_counter() - start)
    warm = float(np.median(times))
    out = {"wall_s": wall, "steps_per_s": num_steps / warm, "compiles": log.count,
           "compile_s": log.seconds, "iterations": num_steps}
    if mesh is not None:
        devices = mesh.size
        out.update(devices=devices, batch=batch, images_per_s_per_device=num_steps / warm * batch / devices,
                   busiest_over_mean=plan.load.max_over_mean, padding=plan.load.padding)
    return out


def _ensure_devices(count: int, argv) -> None:
    """Restart this script with ``count`` forced host devices when there are fewer devices and
    no accelerator (the flag must be set before jax starts)."""
    if jax.device_count() >= count:
        return
    flag = f"--xla_force_host_platform_device_count={count}"
    if jax.default_backend() != "cpu" or flag in os.environ.get("XLA_FLAGS", ""):
        raise SystemExit(f"--devices {count}: only {jax.device_count()} {jax.default_backend()} "
                         "device(s) here")
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


def run_sharded(methods, devices: int, num_steps: int, seed: int, repeats: int, results: dict) -> dict:
    """``exact`` and ``iwae_equal_cost`` on a mesh of ``devices``, 32 examples per device, with
    their scaling efficiency against the one-device figures in ``results``."""
    mesh = data_mesh(devices)
    out = {}
    for method in [m for m in ("exact", "iwae_equal_cost") if m in methods]:
        r = run_method(method, num_steps, seed, repeats, mesh=mesh, batch=BATCH * devices)
        single = results[method]["steps_per_s"] * BATCH
        r["scaling_efficiency"] = r["images_per_s_per_device"] / single
        out[f"{method}_on_{devices}_devices"] = r
        print(f"{method:15s} on {devices} devices (batch {r['batch']}): {r['steps_per_s']:8.1f} steps/s, "
              f"{r['images_per_s_per_device']:8.0f} images/s per device (one device: {single:.0f}), "
              f"scaling efficiency {r['scaling_efficiency']:.2f}; {r['compiles']} compiles; "
              f"busiest device / mean slots {r['busiest_over_mean']:.2f}", flush=True)
    return out


# --- bias on a model with exact log p(x) ---------------------------------------------------

SHIFT, WIDEN = 1.0, 0.4
CHUNK = 16_384                 # draws per compiled call of the bias estimators


def bias_problem():
    """A linear-Gaussian model (D = 4, d = 2), a fixed x, its exact log p(x), and a poor
    diagonal proposal: the exact posterior's diagonal, shifted by 1.0 and 1.5 times wider
    (log-scale + 0.4). $\\mathrm{IWAE}_{128}$ is about 0.28 nats below $\\log p(x)$ there, so the cap
    of ``fixed_cap`` costs a measurable bias."""
    model = lg.make_linear_gaussian(jax.random.key(3), data_dim=4, latent_dim=2)
    x = jnp.array([1.0, -0.5, 2.0, 0.3])
    mean, log_scale = lg.posterior_diag(model, x)
    return model, x, lg.log_marginal(model, x), mean + SHIFT, log_scale + WIDEN


def _weights(key, shape):
    model, x, _, q_mean, q_log_scale = bias_problem()
    return lg.log_weights(key, model, x, q_mean, q_log_scale, math.prod(shape)).reshape(shape)


@jax.jit
def _capped_chunk(key):
    k_key, w_key = jax.random.split(key)
    clipped = jnp.minimum(sample_num_terms(k_key, (CHUNK,)), CAP)
    return sumo_from_log_weights(_weights(w_key, (CHUNK, MIN_TERMS + CAP)), clipped, MIN_TERMS)


@partial(jax.jit, static_argnames=("size",))
def _static_chunk(key, shared, size: int):
    """static_k's estimator: SUMO of m + J samples, one J per batch of 32 draws. Within a chunk
    the batches share one buffer of ``size`` and are masked to their own J, which gives the
    value of a buffer of exactly m + J (what the static program computes) with one compile per
    buffer size rather than one per J."""
    log_w = _weights(key, (CHUNK, size))
    return sumo_from_log_weights(log_w, jnp.repeat(shared, BATCH), MIN_TERMS)


def _static_draws(key, num: int) -> np.ndarray:
    k_key, w_key = jax.random.split(key)
    shared = np.asarray(_draw_k(k_key, num // BATCH)).reshape(-1, CHUNK // BATCH)
    values = []
    for c, row in enumerate(shared):
        size = MIN_TERMS + max(128, 1 << (int(row.max()) - 1).bit_length())   # 132, 260, 516, ...
        values.append(np.asarray(_static_chunk(jax.random.fold_in(w_key, c), jnp.asarray(row), size)))
    return np.concatenate(values)


@jax.jit
def _shared_k_chunk(key):
    """exact_shared_k: the package's ``sumo`` with one J per group of 32 draws."""
    def one(k):
        return sumo(k, lambda kk, n: _weights(kk, (BATCH, n)), MIN_TERMS, batch_shape=())[0]
    return jax.lax.map(one, jax.random.split(key, CHUNK // BATCH)).reshape(-1)


@jax.jit
def _flat_chunk(key, segment_ids, positions):
    log_w = _weights(key, segment_ids.shape)
    kernel = partial(packed_estimates, num_segments=BATCH, estimator=SUMO(MIN_TERMS))
    return jax.vmap(kernel)(log_w, segment_ids, positions)


def _exact_draws(key, num: int) -> np.ndarray:
    """exact: :func:`~lvm_tutorial.packed.packed_estimates`, the trainer's kernel, on packed buffers."""
    k_key, w_key = jax.random.split(key)
    num_terms = np.asarray(_draw_k(k_key, num)).reshape(-1, BATCH)
    longest = MIN_TERMS + int(num_terms.max())
    size = 256 if longest <= 256 else 128 * -(-longest // 128)
    plan = pack_microbatches(MIN_TERMS + num_terms, size)
    rows = CHUNK // BATCH
    count = -(-len(plan.step) // rows) * rows
    pad = count - len(plan.step)
    seg = np.concatenate([plan.segment_ids, np.full((pad, size), BATCH, np.int32)])
    pos = np.concatenate([plan.positions, np.zeros((pad, size), np.int32)])
    values = [np.asarray(_flat_chunk(jax.random.fold_in(w_key, c), seg[c * rows:(c + 1) * rows],
                                     pos[c * rows:(c + 1) * rows])) for c in range(count // rows)]
    return np.concatenate(values)[:len(plan.step)][plan.example_weight > 0]


@jax.jit
def _iwae_chunk(key):
    """iwae_equal_cost: IWAE with K = m + E[J] samples, rounded."""
    return iwae_bound(_weights(key, (CHUNK, EQUAL_COST)))


def estimator_bias(num_draws: int = 1 << 19, seed: int = 0, methods=METHODS) -> dict:
    """Mean and standard error of (estimate - log p(x)) over about ``num_draws`` draws, per method.

    SUMO's variance is infinite with this tail (its mean is carried by rare draws with a large
    $J$), so its standard error is only indicative; ``fixed_cap``'s is finite.
    """
    chunks = max(1, num_draws // CHUNK)
    log_px = float(bias_problem()[2])
    keys = jax.random.split(jax.random.key(seed + 100), 5)
    makers = {
        "iwae_equal_cost": lambda: np.concatenate([np.asarray(_iwae_chunk(k)) for k in jax.random.split(keys[4], chunks)]),
        "exact": lambda: _exact_draws(keys[0], chunks * CHUNK),
        "static_k": lambda: _static_draws(keys[1], chunks * CHUNK),
        "fixed_cap": lambda: np.concatenate([np.asarray(_capped_chunk(k)) for k in jax.random.split(keys[2], chunks)]),
        "exact_shared_k": lambda: np.concatenate([np.asarray(_shared_k_chunk(k))
                                                  for k in jax.random.split(keys[3], chunks)]),
    }
    out = {}
    for name in methods:
        err = np.asarray(makers[name](), np.float64) - log_px
        out[name] = {"bias_nats": float(err.mean()), "bias_se": float(err.std(ddof=1) / math.sqrt(len(err))),
                     "bias_draws": int(len(err))}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1000, help="training iterations per method")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--bias-draws", type=int, default=1 << 19, help="draws behind each bias estimate")
    parser.add_argument("--json", type=str, default=None, help="write the results to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per method (median)")
    parser.add_argument("--devices", type=int, default=1,
                        help="also train exact and iwae_equal_cost on this many devices")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.devices < 1:
        parser.error("--devices must be at least 1")
    if args.devices > 1:
        _ensure_devices(args.devices, sys.argv[1:] if argv is None else list(argv))
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}, "
          f"{jax.device_count()} devices); {args.iterations} iterations, batch {BATCH}, "
          f"m = {MIN_TERMS}", flush=True)
    bias = estimator_bias(args.bias_draws, args.seed, args.methods)
    results = {}
    for method in args.methods:
        results[method] = {**run_method(method, args.iterations, args.seed, args.repeats), **bias[method]}
        r = results[method]
        print(f"{method:15s} wall {r['wall_s']:8.2f} s  {r['steps_per_s']:8.1f} steps/s  "
              f"{r['compiles']:4d} compiles ({r['compile_s']:.1f} s)  "
              f"bias {format_estimate(r['bias_nats'], r['bias_se'], sign=True)} nats", flush=True)
    if "exact" in results and "iwae_equal_cost" in results:
        ratio = results["iwae_equal_cost"]["steps_per_s"] / results["exact"]["steps_per_s"]
        results["sumo_over_iwae_time_per_step"] = ratio
        print(f"SUMO's time per step / IWAE_{EQUAL_COST}'s (equal expected samples, same trainer): "
              f"{ratio:.2f}", flush=True)
    if args.devices > 1:
        results.update(run_sharded(args.methods, args.devices, args.iterations, args.seed,
                                   args.repeats, results))
    if "exact" in results:
        for other in args.methods:
            if other != "exact":
                wall = results[other]["wall_s"] / results["exact"]["wall_s"]
                speed = results["exact"]["steps_per_s"] / results[other]["steps_per_s"]
                print(f"{other}: {wall:.2f}x exact's wall time; exact runs {speed:.2f}x its steps/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
