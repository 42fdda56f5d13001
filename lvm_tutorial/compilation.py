"""Counting XLA compilations, for tests, benchmarks and notebooks.

``jax_log_compiles`` writes to stderr, which strict nbval would compare; this counter listens
to JAX's own monitoring events instead and prints nothing.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import jax

__all__ = ["CompileLog", "count_compilations"]

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@dataclass
class CompileLog:
    """Number of backend compilations seen, and the seconds they took."""
    count: int = 0
    seconds: float = 0.0


@contextlib.contextmanager
def count_compilations():
    """``with count_compilations() as log: ...`` then read ``log.count`` and ``log.seconds``.

    Every compilation counts, including those of small eager operations (``jnp.ones`` on a new
    shape compiles too), so prepare inputs before entering the block.
    """
    log = CompileLog()

    def listener(name, duration, **kwargs):
        if name == _BACKEND_COMPILE:
            log.count += 1
            log.seconds += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield log
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
