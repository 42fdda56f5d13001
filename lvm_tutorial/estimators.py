r"""Bounds and unbiased estimators of $\log p(x)$ built from importance log-weights.

Sampling and reduction are kept apart: the bounds take log-weights
$\log w_k = \log p(x, z_k) - \log q(z_k \mid x)$, $z_k \sim q$, along the last axis.

SUMO (Luo et al., 2020) telescopes the IWAE bounds and truncates the series at a random
$K$ (Russian roulette, Lyne et al., 2015):

$$\mathrm{SUMO} = \mathrm{IWAE}_m + \sum_{j=1}^{K}
  \frac{\mathrm{IWAE}_{m+j} - \mathrm{IWAE}_{m+j-1}}{P(K \ge j)},$$

which is unbiased for $\log p(x)$. Source 001 divides the $j$-th correction by
$P(K \ge m + j)$ instead; that version is biased (measured in chapter 6).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

__all__ = [
    "elbo",
    "iwae_bound",
    "iwae_bounds",
    "effective_sample_size",
    "log_tail_survival",
    "tail_survival",
    "expected_num_terms",
    "max_num_terms",
    "sample_num_terms",
    "sumo_from_log_weights",
    "buffer_sizes",
    "sumo",
]

# Bits of randomness behind one uniform in `sample_num_terms`: its smallest value is
# about 2**-UNIFORM_BITS, which bounds the largest K the sampler can ever return.
UNIFORM_BITS = 128


def elbo(log_weights: jax.Array) -> jax.Array:
    r"""Monte Carlo ELBO $\frac1K \sum_k \log w_k$ over the last axis (shape ``(..., K)`` to ``(...)``)."""
    return jnp.mean(log_weights, axis=-1)


def iwae_bound(log_weights: jax.Array) -> jax.Array:
    r"""Importance-weighted bound $\mathrm{IWAE}_K = \log \frac1K \sum_{k=1}^K w_k$ over the last axis.

    Burda et al. (2016). Shape ``(..., K)`` to ``(...)``.
    """
    num = log_weights.shape[-1]
    return logsumexp(log_weights, axis=-1) - jnp.log(jnp.asarray(num, log_weights.dtype))


@jax.custom_vjp
def _cumlogsumexp(x: jax.Array) -> jax.Array:
    r"""``jax.lax.cumlogsumexp`` over the last axis, with a cheaper-to-compile gradient.

    XLA's derivative of the forward ``reduce_window`` took 11 s to compile for a buffer of 891
    on this 2-core CPU, against 1 s for the forward alone; the backward pass below is two more
    forward cumulative log-sum-exps. With $y = \operatorname{cumlogsumexp}(x)$ and cotangent
    $c = c^+ - c^-$, $\partial y_k / \partial x_i = e^{x_i - y_k}$ for $i \le k$, so
    $g_i = e^{x_i + A^+_i} - e^{x_i + A^-_i}$ with
    $A^\pm_i = \log \sum_{k \ge i} c^\pm_k e^{-y_k}$ (a reverse cumlogsumexp); since
    $y_k \ge x_i$ nothing overflows.
    """
    return jax.lax.cumlogsumexp(x, axis=x.ndim - 1)


def _cumlogsumexp_fwd(x):
    y = _cumlogsumexp(x)
    return y, (x, y)


def _cumlogsumexp_bwd(residuals, cotangent):
    x, y = residuals
    axis = x.ndim - 1
    with jax.numpy_dtype_promotion("standard"):
        log_pos = jnp.log(jnp.maximum(cotangent, 0.0)) - y
        log_neg = jnp.log(jnp.maximum(-cotangent, 0.0)) - y
    a_pos = jax.lax.cumlogsumexp(log_pos, axis=axis, reverse=True)
    a_neg = jax.lax.cumlogsumexp(log_neg, axis=axis, reverse=True)
    return (jnp.exp(x + a_pos) - jnp.exp(x + a_neg),)


_cumlogsumexp.defvjp(_cumlogsumexp_fwd, _cumlogsumexp_bwd)


def iwae_bounds(log_weights: jax.Array) -> jax.Array:
    r"""All prefix bounds at once: entry $k-1$ is $\mathrm{IWAE}_k$ of the first $k$ weights.

    $$\mathrm{IWAE}_k = \operatorname{cumlogsumexp}(\log w)_k - \log k .$$

    Shape ``(..., K)`` to ``(..., K)``; uses ``jax.lax.cumlogsumexp`` (with a hand-written
    gradient that compiles ten times faster; reverse mode only).
    """
    num = log_weights.shape[-1]
    counts = jnp.arange(1, num + 1, dtype=log_weights.dtype)
    return _cumlogsumexp(log_weights) - jnp.log(counts)


def effective_sample_size(log_weights: jax.Array) -> jax.Array:
    r"""Kish's effective sample size $(\sum_k w_k)^2 / \sum_k w_k^2$, computed in log space.

    Between 1 (one weight carries everything) and $K$ (equal weights). ``(..., K)`` to ``(...)``.
    """
    return jnp.exp(2 * logsumexp(log_weights, axis=-1) - logsumexp(2 * log_weights, axis=-1))


def log_tail_survival(k: jax.Array, alpha: float = 80, b: float = 0.1) -> jax.Array:
    r"""$\log P(K \ge k)$ of SUMO's tail: $-\log k$ for $k < \alpha$, then
    $-\log\alpha + (k - \alpha)\log(1 - b)$. Zero for $k \le 1$ (always $K \ge 1$).

    Computed in log space so that its negative exponent, the weight $1/P(K\ge k)$, is exact
    until it leaves the float range.
    """
    k = jnp.asarray(k)
    kf = jnp.maximum(k, 1).astype(jnp.result_type(k, float))
    head = -jnp.log(kf)
    tail = -math.log(alpha) + (kf - alpha) * math.log1p(-b)
    return jnp.where(kf < alpha, head, tail)


def tail_survival(k: jax.Array, alpha: float = 80, b: float = 0.1) -> jax.Array:
    r"""$P(K \ge k)$ for $K \in \{1, 2, \dots\}$: $1/k$ for $k < \alpha$, else $\frac1\alpha (1-b)^{k-\alpha}$.

    The tail of Luo et al. (2020), appendix; ``k`` is an integer array of any shape.
    """
    return jnp.exp(log_tail_survival(k, alpha, b))


def expected_num_terms(alpha: float = 80, b: float = 0.1) -> float:
    r"""$\mathbb E[K] = \sum_{k\ge1} P(K \ge k) = H_{\alpha-1} + \frac{1}{\alpha b}$ (closed form)."""
    harmonic = sum(1.0 / k for k in range(1, int(alpha)))
    return harmonic + 1.0 / (alpha * b)


def max_num_terms(alpha: float = 80, b: float = 0.1) -> int:
    """The largest K that :func:`sample_num_terms` can return (set by its 128 random bits)."""
    log_u_min = -(UNIFORM_BITS + 1) * math.log(2.0)
    return int(alpha + math.floor((log_u_min + math.log(alpha)) / math.log1p(-b)))


def _log_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """log U for U ~ Uniform(0, 1), resolved down to 2**-128.

    A float32 uniform stops at 2**-24, which would cap K near 196 for the default tail and
    silently truncate the series. Here U = 2**-(e+1) * (1 + f): e counts the leading zero bits
    of four 32-bit words (geometric, as a uniform's binary exponent is), f is uniform.
    """
    # Drawn flat and worked on as (n, 5): the same bits as a draw of shape + (5,), compiled
    # several times faster than the multi-dimensional version.
    words = jax.random.bits(key, (math.prod(shape) * 5,), jnp.uint32).reshape(-1, 5)
    zeros = jax.lax.clz(words[..., :4]).astype(jnp.int32)          # 32 where a word is 0
    seen_one = jnp.cumsum(zeros < 32, axis=-1) > 0
    first = jnp.argmax(seen_one, axis=-1)
    exponent = jnp.where(seen_one[..., -1],
                         32 * first + jnp.take_along_axis(zeros, first[..., None], -1)[..., 0],
                         UNIFORM_BITS)
    frac = (words[..., 4] >> 8).astype(jnp.float32) * (2.0 ** -24)
    dtype = jnp.result_type(float)
    log_u = -(exponent + 1).astype(dtype) * math.log(2.0) + jnp.log1p(frac.astype(dtype))
    return log_u.reshape(shape)


def sample_num_terms(key: jax.Array, shape: tuple[int, ...] = (), alpha: float = 80,
                     b: float = 0.1) -> jax.Array:
    r"""Draw $K \in \{1, 2, \dots\}$ with $P(K \ge k)$ given by :func:`tail_survival`.

    Exact inverse CDF, $K = \max\{k : P(K \ge k) \ge U\}$:
    $K = \lfloor 1/U \rfloor$ when $1/U < \alpha$, else
    $K = \alpha + \lfloor \log(\alpha U) / \log(1-b) \rfloor$.
    (Source 001's $\lfloor u/(1-u) \rfloor$ is the same for $K \in \{0, 1, \dots\}$, one too small here.)

    Returns an int32 array of ``shape``; never larger than :func:`max_num_terms`.
    """
    shape = tuple(shape)
    log_u = _log_uniform(key, shape)
    head = jnp.floor(jnp.exp(-log_u))
    tail = alpha + jnp.floor((log_u + math.log(alpha)) / math.log1p(-b))
    in_head = -log_u < math.log(alpha)
    return jnp.where(in_head, jnp.minimum(head, alpha - 1), tail).astype(jnp.int32)


def _is_concrete(x) -> bool:
    try:
        np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return False
    return True


def sumo_from_log_weights(log_weights: jax.Array, num_terms: jax.Array, min_terms: int, *,
                          alpha: float = 80, b: float = 0.1) -> jax.Array:
    r"""SUMO estimate of $\log p(x)$ from a buffer of log-weights.

    $$\mathrm{SUMO} = \mathrm{IWAE}_m + \sum_{j=1}^{K}
      \frac{\mathrm{IWAE}_{m+j} - \mathrm{IWAE}_{m+j-1}}{P(K \ge j)}$$

    using the first $m + K$ entries of the last axis; entries beyond are masked out.
    Each example may have its own $K$: ``num_terms`` is data (it may be traced), so a
    new $K$ never recompiles. The masked branch never evaluates a weight beyond its own
    $K$, so a buffer much longer than $m + K$ cannot overflow the weight $1/P(K \ge j)$
    into the gradient.

    Args:
      log_weights: ``(..., L)`` log importance weights, ``L >= min_terms + K``; entries past
        ``min_terms + K`` must be finite or ``-inf``.
      num_terms: integer ``K >= 1`` of shape ``(...)`` (broadcast against the batch shape).
      min_terms: the static minimum number of terms ``m >= 1``.
      alpha, b: the tail of :func:`tail_survival` that ``num_terms`` was drawn from.

    Returns:
      ``(...)``.
    """
    min_terms = int(min_terms)
    if min_terms < 1:
        raise ValueError(f"min_terms must be at least 1, got {min_terms}")
    length = log_weights.shape[-1]
    if length <= min_terms:
        raise ValueError(f"log_weights has {length} entries on its last axis; SUMO needs more "
                         f"than min_terms={min_terms}")
    if _is_concrete(num_terms):
        k = np.asarray(num_terms)
        if k.size and k.min() < 1:
            raise ValueError(f"num_terms must be at least 1, got {k.min()}")
        if k.size and min_terms + k.max() > length:
            raise ValueError(f"log_weights has {length} entries but min_terms + num_terms needs "
                             f"{min_terms + int(k.max())}")
    bounds = iwae_bounds(log_weights)
    deltas = bounds[..., min_terms:] - bounds[..., min_terms - 1:-1]        # entry j-1 is Delta_j
    j = jnp.arange(1, length - min_terms + 1)
    keep = j <= jnp.asarray(num_terms)[..., None]
    safe_j = jnp.where(keep, j, 1)               # a masked j never reaches the overflowing weight
    weights = jnp.exp(-log_tail_survival(safe_j, alpha, b)).astype(log_weights.dtype)
    corrections = jnp.where(keep, deltas * weights, 0.0)
    return bounds[..., min_terms - 1] + jnp.sum(corrections, axis=-1)


def buffer_sizes(min_terms: int, alpha: float = 80, b: float = 0.1, smallest: int = 16,
                 growth: int = 4) -> tuple[int, ...]:
    """A geometric ladder of buffer lengths ``m + K_cap``, ending at ``m + max_num_terms``,
    so that every K the sampler can draw fits in one of them."""
    top = max_num_terms(alpha, b)
    caps, cap = [], smallest
    while cap < top:
        caps.append(cap)
        cap *= growth
    caps.append(top)
    return tuple(min_terms + c for c in caps)


def sumo(key: jax.Array, log_weight_fn, min_terms: int, *, batch_shape: tuple[int, ...] = (),
         alpha: float = 80, b: float = 0.1) -> tuple[jax.Array, jax.Array]:
    r"""Draw $K$ and enough log-weights, and return ``(SUMO, K)``; no buffer ever cuts $K$ short.

    The only limit is the sampler's own: it resolves uniforms down to $2^{-129}$, so it never
    returns more than :func:`max_num_terms` (887 for the default tail), where the weight
    $1/P(K \ge j)$ is about to overflow float32; a larger $K$ has probability below $10^{-38}$.

    ``log_weight_fn(key, num_samples)`` must return log-weights of shape
    ``(*batch_shape, num_samples)``. The buffer is the smallest of :func:`buffer_sizes` that
    holds ``m + max(K)``, chosen with ``lax.switch`` so that the function also runs under
    ``jit`` (one program holds every buffer size; only the chosen branch runs). Draw one batch
    of examples with ``batch_shape`` rather than ``vmap``: under ``vmap`` a switch on a batched
    index evaluates every branch.
    """
    min_terms = int(min_terms)
    if min_terms < 1:
        raise ValueError(f"min_terms must be at least 1, got {min_terms}")
    k_key, w_key = jax.random.split(key)
    num_terms = sample_num_terms(k_key, tuple(batch_shape), alpha, b)
    sizes = buffer_sizes(min_terms, alpha, b)
    needed = min_terms + jnp.max(num_terms)
    index = jnp.sum(jnp.asarray(sizes) < needed)

    # K enters every branch as an operand, so that it is traced there: the branches that are
    # not taken (smaller buffers) must not check a concrete K against their length.
    def branch(size):
        return lambda k: sumo_from_log_weights(log_weight_fn(w_key, size), k, min_terms,
                                               alpha=alpha, b=b)

    value = jax.lax.switch(index, [branch(s) for s in sizes], num_terms)
    return value, num_terms
