r"""Bounds and unbiased estimators of $\log p(x)$ built from importance log-weights.

Sampling and reduction are kept apart: the bounds take log-weights
$\log w_k = \log p(x, z_k) - \log q(z_k \mid x)$, $z_k \sim q$, along the last axis.

SUMO (Luo et al., 2020) telescopes the IWAE bounds and truncates the series at a random
$J$ (Russian roulette, Lyne et al., 2015):

$$\mathrm{SUMO} = \mathrm{IWAE}_m + \sum_{j=1}^{J}
  \frac{\mathrm{IWAE}_{m+j} - \mathrm{IWAE}_{m+j-1}}{P(J \ge j)},$$

which is unbiased for $\log p(x)$. Source 001 divides the $j$-th correction by
$P(J \ge m + j)$ instead; that version is biased (measured in chapter 6).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

__all__ = [
    "Tail",
    "IWAE",
    "SUMO",
    "elbo",
    "iwae_bound",
    "iwae_bounds",
    "segment_cumlogsumexp",
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
# about 2**-UNIFORM_BITS, which bounds the largest J the sampler can ever return.
UNIFORM_BITS = 128


class Tail(NamedTuple):
    r"""SUMO's tail $P(J \ge j)$: $1/j$ for $j < \alpha$, then $\frac1\alpha (1-b)^{j-\alpha}$.

    The default is Luo et al. (2020)'s appendix. A value, so it travels through ``jit`` as a
    static argument and two equal tails are one compiled program.
    """
    alpha: float = 80
    b: float = 0.1


class IWAE(NamedTuple):
    r"""The estimator $\mathrm{IWAE}_K$ with $K$ = ``num_samples`` (a value, like :class:`Tail`)."""
    num_samples: int = 2


class SUMO(NamedTuple):
    """The estimator SUMO with $m$ = ``min_terms`` and the random $J$ drawn from ``tail``."""
    min_terms: int = 4
    tail: Tail = Tail()

    def expected_samples(self) -> float:
        r"""$m + \mathbb E[J]$, the expected number of importance samples per estimate."""
        return self.min_terms + expected_num_terms(self.tail)


def elbo(log_weights: jax.Array) -> jax.Array:
    r"""Monte Carlo ELBO $\frac1K \sum_k \log w_k$ over the last axis (shape ``(..., K)`` to ``(...)``)."""
    return jnp.mean(log_weights, axis=-1)


def iwae_bound(log_weights: jax.Array) -> jax.Array:
    r"""Importance-weighted bound $\mathrm{IWAE}_K = \log \frac1K \sum_{k=1}^K w_k$ over the last axis.

    Burda et al. (2016). Shape ``(..., K)`` to ``(...)``.
    """
    num = log_weights.shape[-1]
    return logsumexp(log_weights, axis=-1) - jnp.log(jnp.asarray(num, log_weights.dtype))


def segment_cumlogsumexp(x: jax.Array, segment_ids: jax.Array, block: int = 8) -> jax.Array:
    r"""Prefix log-sum-exp within segments: $y_t = \log \sum_{s \le t,\ \mathrm{seg}_s = \mathrm{seg}_t} e^{x_s}$.

    ``x`` and ``segment_ids`` are ``(L,)``; each segment is one contiguous run of equal ids.
    Exact for any spread of ``x``: the slots are cut into blocks of ``block``; inside a block
    every prefix is shifted by its own running maximum (so every sum is at least 1), and a
    segment that began in an earlier block adds the log-sum of the earlier blocks' tails, shifted
    the same way. Work is ``L * block + (L / block)**2`` elementwise operations, all
    differentiable in forward and reverse mode with plain JAX (no custom rule), and quick to
    compile: ``jax.lax.cumlogsumexp``'s own derivative is an associative scan that compiles
    about three times slower at the lengths SUMO needs (``bench/prefix_logsumexp.py``, figures
    in ``bench/RESULTS.md``).
    """
    size = x.shape[0]
    pad = -size % block
    lw = jnp.pad(x, (0, pad)).reshape(-1, block)
    seg = jnp.pad(segment_ids, (0, pad), constant_values=-1).reshape(-1, block)
    i = jnp.arange(block)
    same = (seg[:, :, None] == seg[:, None, :]) & (i[None, None, :] <= i[None, :, None])  # [blk, t, s]
    local = _masked_logsumexp(lw[:, None, :], same)
    tail, last, first = local[:, -1], seg[:, -1], seg[:, 0]
    k = jnp.arange(lw.shape[0])
    feeds = (last[None, :] == first[:, None]) & (k[None, :] < k[:, None])  # block k' feeds block k
    carry = _masked_logsumexp(tail[None, :], feeds)                      # -inf: nothing feeds
    continues = (seg == first[:, None]) & jnp.isfinite(carry)[:, None]
    # both branches stay finite, so that no derivative of any order meets inf * 0
    carry = jnp.where(jnp.isfinite(carry), carry, 0.0)
    out = jnp.where(continues, jnp.logaddexp(local, carry[:, None]), local)
    return out.reshape(-1)[:size]


def _masked_logsumexp(values: jax.Array, mask: jax.Array) -> jax.Array:
    """``log sum exp`` over the last axis of the entries where ``mask`` holds; ``-inf`` where none
    does, with zero (not NaN) gradients for the masked entries and for empty rows."""
    empty = ~jnp.any(mask, axis=-1)
    top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, values, -jnp.inf), axis=-1, keepdims=True))
    top = jnp.where(empty[..., None], 0.0, top)
    total = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, values - top, 0.0)), 0.0), axis=-1)
    return jnp.where(empty, -jnp.inf, top[..., 0] + jnp.log(jnp.where(empty, 1.0, total)))


def iwae_bounds(log_weights: jax.Array) -> jax.Array:
    r"""All prefix bounds at once: entry $k-1$ is $\mathrm{IWAE}_k$ of the first $k$ weights.

    $$\mathrm{IWAE}_k = \log \sum_{i \le k} w_i - \log k,$$

    the prefix log-sums by :func:`segment_cumlogsumexp` (one segment per row). Shape
    ``(..., K)`` to ``(..., K)``; differentiable in both modes (``jax.hessian`` works).
    """
    num = log_weights.shape[-1]
    rows = log_weights.reshape(-1, num)
    prefix = jax.vmap(segment_cumlogsumexp, (0, None))(rows, jnp.zeros(num, jnp.int32))
    log_counts = jnp.log(jnp.arange(1, num + 1, dtype=log_weights.dtype))
    return prefix.reshape(log_weights.shape) - log_counts.reshape((1,) * (log_weights.ndim - 1) + (num,))


def effective_sample_size(log_weights: jax.Array) -> jax.Array:
    r"""Kish's effective sample size $(\sum_k w_k)^2 / \sum_k w_k^2$, computed in log space.

    Between 1 (one weight carries everything) and $K$ (equal weights). ``(..., K)`` to ``(...)``.
    """
    return jnp.exp(2 * logsumexp(log_weights, axis=-1) - logsumexp(2 * log_weights, axis=-1))


def log_tail_survival(k: jax.Array, tail: Tail = Tail()) -> jax.Array:
    r"""$\log P(J \ge j)$ of SUMO's tail, $j$ = ``k``: $-\log j$ for $j < \alpha$, then
    $-\log\alpha + (j - \alpha)\log(1 - b)$. Zero for $j \le 1$ (always $J \ge 1$).

    Computed in log space so that its negative exponent, the weight $1/P(J\ge j)$, is exact
    until it leaves the float range.
    """
    alpha, b = tail
    k = jnp.asarray(k)
    kf = jnp.maximum(k, 1).astype(jnp.result_type(k, float))
    head = -jnp.log(kf)
    geometric = -math.log(alpha) + (kf - alpha) * math.log1p(-b)
    return jnp.where(kf < alpha, head, geometric)


def tail_survival(k: jax.Array, tail: Tail = Tail()) -> jax.Array:
    r"""$P(J \ge j)$ for $J \in \{1, 2, \dots\}$: $1/j$ for $j < \alpha$, else $\frac1\alpha (1-b)^{j-\alpha}$.

    The tail of Luo et al. (2020), appendix; ``k`` holds $j$, an integer array of any shape.
    """
    return jnp.exp(log_tail_survival(k, tail))


def expected_num_terms(tail: Tail = Tail()) -> float:
    r"""$\mathbb E[J] = \sum_{j\ge1} P(J \ge j) = H_{\alpha-1} + \frac{1}{\alpha b}$ (closed form)."""
    alpha, b = tail
    harmonic = sum(1.0 / k for k in range(1, int(alpha)))
    return harmonic + 1.0 / (alpha * b)


def max_num_terms(tail: Tail = Tail()) -> int:
    r"""The largest J, $J_{\max}$, that :func:`sample_num_terms` can return (set by its 128 random bits)."""
    alpha, b = tail
    log_u_min = -(UNIFORM_BITS + 1) * math.log(2.0)
    return int(alpha + math.floor((log_u_min + math.log(alpha)) / math.log1p(-b)))


def _log_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """log U for U ~ Uniform(0, 1), resolved down to 2**-128.

    A float32 uniform stops at 2**-24, which would cap J near 196 for the default tail and
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


def sample_num_terms(key: jax.Array, shape: tuple[int, ...] = (), tail: Tail = Tail()) -> jax.Array:
    r"""Draw $J \in \{1, 2, \dots\}$ with $P(J \ge j)$ given by :func:`tail_survival`.

    Exact inverse CDF, $J = \max\{j : P(J \ge j) \ge U\}$:
    $J = \lfloor 1/U \rfloor$ when $1/U < \alpha$, else
    $J = \alpha + \lfloor \log(\alpha U) / \log(1-b) \rfloor$.
    (Source 001's $\lfloor u/(1-u) \rfloor$ is the same for $J \in \{0, 1, \dots\}$, one too small here.)

    Returns an int32 array of ``shape``; never larger than :func:`max_num_terms`.
    """
    alpha, b = tail
    shape = tuple(shape)
    log_u = _log_uniform(key, shape)
    head = jnp.floor(jnp.exp(-log_u))
    geometric = alpha + jnp.floor((log_u + math.log(alpha)) / math.log1p(-b))
    in_head = -log_u < math.log(alpha)
    return jnp.where(in_head, jnp.minimum(head, alpha - 1), geometric).astype(jnp.int32)


def _is_concrete(x) -> bool:
    try:
        np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return False
    return True


def sumo_from_log_weights(log_weights: jax.Array, num_terms: jax.Array, min_terms: int, *,
                          tail: Tail = Tail()) -> jax.Array:
    r"""SUMO estimate of $\log p(x)$ from a buffer of log-weights.

    $$\mathrm{SUMO} = \mathrm{IWAE}_m + \sum_{j=1}^{J}
      \frac{\mathrm{IWAE}_{m+j} - \mathrm{IWAE}_{m+j-1}}{P(J \ge j)}$$

    using the first $m + J$ entries of the last axis; entries beyond are masked out.
    Each example may have its own $J$: ``num_terms`` is data (it may be traced), so a
    new $J$ never recompiles. The masked branch never evaluates a weight beyond its own
    $J$, so a buffer much longer than $m + J$ cannot overflow the weight $1/P(J \ge j)$
    into the gradient.

    Args:
      log_weights: ``(..., L)`` log importance weights, ``L >= min_terms + J``; entries past
        ``min_terms + J`` must be finite or ``-inf``.
      num_terms: integer ``J >= 1`` of shape ``(...)`` (broadcast against the batch shape).
      min_terms: the static minimum number of terms ``m >= 1``.
      tail: the :class:`Tail` that ``num_terms`` was drawn from.

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
    k = jnp.asarray(num_terms)[..., None]
    j = jnp.arange(1, length - min_terms + 1).reshape((1,) * (k.ndim - 1) + (-1,))
    keep = jnp.broadcast_to(j <= k, deltas.shape)
    safe_j = jnp.where(keep, j, 1)               # a masked j never reaches the overflowing weight
    weights = jnp.exp(-log_tail_survival(safe_j, tail)).astype(log_weights.dtype)
    corrections = jnp.where(keep, deltas * weights, 0.0)
    return bounds[..., min_terms - 1] + jnp.sum(corrections, axis=-1)


def buffer_sizes(min_terms: int, tail: Tail = Tail(), smallest: int = 16,
                 growth: int = 4) -> tuple[int, ...]:
    """A geometric ladder of buffer lengths ``m + J_cap``, ending at ``m + max_num_terms``,
    so that every J the sampler can draw fits in one of them."""
    top = max_num_terms(tail)
    caps, cap = [], smallest
    while cap < top:
        caps.append(cap)
        cap *= growth
    caps.append(top)
    return tuple(min_terms + c for c in caps)


def sumo(key: jax.Array, log_weight_fn, min_terms: int, *, batch_shape: tuple[int, ...] = (),
         tail: Tail = Tail()) -> tuple[jax.Array, jax.Array]:
    r"""Draw $J$ and enough log-weights, and return ``(SUMO, J)``; no buffer ever cuts $J$ short.

    The only limit is the sampler's own: it resolves uniforms down to $2^{-129}$, so it never
    returns more than :func:`max_num_terms` (887 for the default tail), where the weight
    $1/P(J \ge j)$ is about to overflow float32; a larger $J$ has probability below $10^{-38}$.

    ``log_weight_fn(key, num_samples)`` must return log-weights of shape
    ``(*batch_shape, num_samples)``. The buffer is the smallest of :func:`buffer_sizes` that
    holds ``m + max(J)``, chosen with ``lax.switch`` so that the function also runs under
    ``jit`` (one program holds every buffer size; only the chosen branch runs). Draw one batch
    of examples with ``batch_shape`` rather than ``vmap``: under ``vmap`` a switch on a batched
    index evaluates every branch.
    """
    min_terms = int(min_terms)
    if min_terms < 1:
        raise ValueError(f"min_terms must be at least 1, got {min_terms}")
    k_key, w_key = jax.random.split(key)
    num_terms = sample_num_terms(k_key, tuple(batch_shape), tail)
    sizes = buffer_sizes(min_terms, tail)
    needed = min_terms + jnp.max(num_terms)
    index = jnp.sum(jnp.asarray(sizes) < needed)

    # J enters every branch as an operand, so that it is traced there: the branches that are
    # not taken (smaller buffers) must not check a concrete J against their length.
    def branch(size):
        return lambda k: sumo_from_log_weights(log_weight_fn(w_key, size), k, min_terms,
                                               tail=tail)

    value = jax.lax.switch(index, [branch(s) for s in sizes], num_terms)
    return value, num_terms
