"""Compile and run time of SUMO's gradient for three prefix log-sum-exp implementations.

Run from the repository root: ``python bench/prefix_logsumexp.py``. The gradient of the mean
SUMO of 32 examples, drawn by ``lvm_tutorial.estimators.sumo`` (its buffer ladder 20, 68, 260
and 891 slots for m = 4, all compiled into one program), with the prefix sums behind
``iwae_bounds`` computed by:

- ``blocked``: the package's ``segment_cumlogsumexp`` (plain JAX, both autodiff modes);
- ``lax``: ``jax.lax.cumlogsumexp``, whose derivative JAX builds from an associative scan;
- ``custom_vjp``: ``lax.cumlogsumexp`` with a hand-written reverse-mode rule (two reverse
  cumulative log-sum-exps; the package's former version, reverse mode only).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import lvm_tutorial.estimators as E


@jax.custom_vjp
def _custom(x):
    return jax.lax.cumlogsumexp(x, axis=x.ndim - 1)


def _custom_fwd(x):
    y = _custom(x)
    return y, (x, y)


def _custom_bwd(residuals, cotangent):
    x, y = residuals
    axis = x.ndim - 1
    log_pos = jnp.log(jnp.maximum(cotangent, 0.0)) - y
    log_neg = jnp.log(jnp.maximum(-cotangent, 0.0)) - y
    a_pos = jax.lax.cumlogsumexp(log_pos, axis=axis, reverse=True)
    a_neg = jax.lax.cumlogsumexp(log_neg, axis=axis, reverse=True)
    return (jnp.exp(x + a_pos) - jnp.exp(x + a_neg),)


_custom.defvjp(_custom_fwd, _custom_bwd)

PREFIX = {
    "blocked": None,
    "lax": lambda x: jax.lax.cumlogsumexp(x, axis=x.ndim - 1),
    "custom_vjp": _custom,
}


def bounds_with(prefix):
    def iwae_bounds(log_weights):
        num = log_weights.shape[-1]
        log_counts = jnp.log(jnp.arange(1, num + 1, dtype=log_weights.dtype))
        return prefix(log_weights) - log_counts.reshape((1,) * (log_weights.ndim - 1) + (num,))
    return iwae_bounds


def measure(name: str, repeats: int) -> tuple[float, float]:
    original = E.iwae_bounds
    if PREFIX[name] is not None:
        E.iwae_bounds = bounds_with(PREFIX[name])
    try:
        def loss(mean, key):
            draw = lambda k, n: mean + jax.random.normal(k, (32, n))
            return jnp.mean(E.sumo(key, draw, 4, batch_shape=(32,))[0])

        grad = jax.jit(jax.grad(loss))
        start = time.perf_counter()
        compiled = grad.lower(1.0, jax.random.key(0)).compile()
        compile_s = time.perf_counter() - start
        compiled(1.0, jax.random.key(0)).block_until_ready()
        start = time.perf_counter()
        for i in range(repeats):
            compiled(1.0, jax.random.key(i)).block_until_ready()
        return compile_s, (time.perf_counter() - start) / repeats
    finally:
        E.iwae_bounds = original


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.default_backend()}")
    for name in PREFIX:
        compile_s, run_s = measure(name, args.repeats)
        print(f"{name:11s} compile {compile_s:6.2f} s   run {run_s * 1e3:7.3f} ms per gradient")


if __name__ == "__main__":
    main()
