r"""Gradients of $\mathbb E_{z \sim \operatorname{Cat}(\pi)}[f(z)]$ with $\pi = \operatorname{softmax}(\phi)$.

A categorical $z \in \{0, \dots, C-1\}$ has no reparameterisation $z = g(\phi, \epsilon)$ that
is differentiable in $\phi$: a sampled integer is piecewise constant in the logits, so
``jax.grad`` through it gives zero. The score-function estimator (Williams, 1992) needs only
$\nabla_\phi \log \pi_z$, which exists:

$$\nabla_\phi \log \operatorname{softmax}(\phi)_z = e_z - \pi, \qquad
  \hat g = \big(f(z) - c\big)\,(e_z - \pi), \quad z \sim \operatorname{Cat}(\pi).$$

With few categories the exact gradient is a sum over all of them (enumeration):
$\nabla_\phi \sum_c \pi_c f(c) = \pi \odot (f - \sum_c \pi_c f(c))$.
``f`` maps one integer category to a scalar.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["categorical_log_prob", "categorical_score", "categorical_expectation",
           "categorical_exact_grad", "categorical_score_function_grad_samples"]


def _check_logits(logits):
    if jnp.ndim(logits) != 1 or jnp.shape(logits)[0] < 2:
        raise ValueError(f"logits must be a (C,) array with C >= 2, got shape {jnp.shape(logits)}")


def categorical_log_prob(z: jax.Array, logits: jax.Array) -> jax.Array:
    r"""$\log \pi_z = \phi_z - \log\sum_c e^{\phi_c}$ for an integer ``z`` (any shape); ``logits`` (C,)."""
    _check_logits(logits)
    return jax.nn.log_softmax(logits)[z]


def categorical_score(z: jax.Array, logits: jax.Array) -> jax.Array:
    r"""$\nabla_\phi \log \pi_z = e_z - \operatorname{softmax}(\phi)$; ``z`` (...) integer to ``(..., C)``."""
    _check_logits(logits)
    num = logits.shape[0]
    one_hot = jax.nn.one_hot(z, num, dtype=jnp.result_type(logits, float))
    return one_hot - jax.lax.broadcast_to_rank(jax.nn.softmax(logits), one_hot.ndim)


def categorical_expectation(f: Callable, logits: jax.Array) -> jax.Array:
    r"""$\mathbb E_{z \sim \operatorname{Cat}(\operatorname{softmax}\phi)}[f(z)] = \sum_c \pi_c f(c)$ by enumeration."""
    _check_logits(logits)
    values = jax.vmap(f)(jnp.arange(logits.shape[0]))
    return jnp.sum(jax.nn.softmax(logits) * values)


def categorical_exact_grad(f: Callable, logits: jax.Array) -> jax.Array:
    r"""$\nabla_\phi \sum_c \pi_c f(c)$ by enumeration (``jax.grad`` of :func:`categorical_expectation`); ``(C,)``."""
    return jax.grad(categorical_expectation, argnums=1)(f, logits)


def categorical_score_function_grad_samples(key, f: Callable, logits: jax.Array, num_samples: int,
                                            baseline=0.0) -> jax.Array:
    r"""Score-function samples $\big(f(z_k) - c_k\big)(e_{z_k} - \pi)$, $z_k \sim \operatorname{Cat}(\pi)$.

    Args:
      key: PRNG key; f: integer category to scalar; logits: ``(C,)``; num_samples: $K$.
      baseline: ``c``, a scalar or ``(K,)`` array whose entry $c_k$ must not depend on $z_k$ itself
        (e.g. :func:`lvm_tutorial.gradients.leave_one_out_baseline` of the ``f`` values).

    Returns:
      ``(K, C)``; their mean is an unbiased estimate of :func:`categorical_exact_grad`.
    """
    _check_logits(logits)
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    z = jax.random.categorical(key, logits, shape=(int(num_samples),))
    centred = jax.vmap(f)(z) - jnp.broadcast_to(baseline, (int(num_samples),))
    return centred[:, None] * categorical_score(z, logits)
