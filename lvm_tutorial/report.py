r"""Printing numbers to the digits they know.

The book's outputs must read the same on any machine (another CPU, a thread count, a GPU),
and nbval checks each printed number to one unit in its last digit. So every chapter prints
through these helpers, following three rules:

- **An estimate goes with its standard error**, the SE rounded to one significant digit (two
  when its leading digit is 1) and the estimate to the same decimal place:
  ``format_estimate(-18.239, 0.21)`` is ``'-18.2 ± 0.2'``, not ``'-18.239 ± 0.21'``.
- **A rounding error is shown as a bound**, never as its value (its low bits are the
  machine's): ``format_bound(2.9e-6, 1e-5)`` is ``'< 1e-05'``.
- **A heavy-tailed quantity is summarised robustly**: quantiles, each rounded to its own
  standard error (from order statistics, no variance needed), or a clipped mean with the clip
  stated. A sample variance of an infinite-variance estimator is never printed.

The functions take numbers or arrays (jax or numpy) and return strings; they never round
what they are given before the last step, so tests can check the arithmetic.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "se_decimals",
    "format_estimate",
    "format_mean",
    "format_bound",
    "quantile_with_se",
    "format_quantiles",
    "format_clipped_mean",
]


def se_decimals(se: float) -> int:
    r"""The decimal place a standard error is rounded to: its leading significant digit.

    Two significant digits when the SE's leading digit is 1 (``0.15``, ``0.0019``), one
    otherwise (``0.2``, ``0.006``); a negative result means tens, hundreds, ... An SE that
    rounds up to a leading 1 (``0.0096``) gets two digits too (``0.010``), so that the printed
    SE obeys the rule it reads as.

    Raises ``ValueError`` for an SE that is zero, negative or not finite: the caller then has
    no uncertainty to round to and should print a bound or an exact value instead.
    """
    se = float(se)
    if not math.isfinite(se) or se <= 0.0:
        raise ValueError(f"a standard error must be positive and finite, got {se}")
    mantissa, exponent = f"{se:.1e}".split("e")      # rounded to two digits first: 0.0196 -> 2.0e-02
    exponent = int(exponent)
    if mantissa.startswith("1"):
        return 1 - exponent
    digit, exponent = f"{se:.0e}".split("e")          # one digit: 0.006 -> 6e-03
    if digit == "1":                                  # 0.0096 rounds up to 1e-02: a leading 1 after
        return 1 - int(exponent)                      # all, so two digits, 0.010, as for 0.0104
    return -int(exponent)


def _fixed(value: float, decimals: int) -> str:
    """``value`` rounded at 10^-decimals, written without an exponent."""
    if decimals >= 0:
        text = f"{value:.{decimals}f}"
    else:
        text = f"{round(value, decimals):.0f}"
    if float(text) == 0.0:
        text = text.lstrip("-+")                      # no '-0.0': its sign is a rounding accident
    return text


def format_estimate(value: float, se: float, *, sign: bool = False) -> str:
    r"""``'value ± se'``, both rounded at the SE's leading significant digit.

    Args:
      value: the estimate.
      se: its standard error (positive and finite).
      sign: write a ``+`` before a positive value (differences, gaps).

    Returns:
      For example ``'-18.2 ± 0.2'``, ``'+0.64 ± 0.06'``, ``'0.0038 ± 0.0019'``; an SE of tens or
      more in powers of ten, so that no trailing zero claims a digit: ``'(1.054 ± 0.013)e+04'``.
    """
    value, se = float(value), float(se)
    decimals = se_decimals(se)
    exponent = 0
    if decimals < 0:                      # an SE of tens or more: '10540' would claim units
        exponent = max(math.floor(math.log10(abs(value))) if value else -decimals, -decimals)
        value, se, decimals = value / 10**exponent, se / 10**exponent, decimals + exponent
    text = _fixed(value, decimals)
    if sign and not text.startswith("-") and float(text) != 0.0:
        text = "+" + text
    pair = f"{text} ± {_fixed(se, decimals)}"
    return f"({pair})e+{exponent:02d}" if exponent else pair


def format_mean(samples, *, sign: bool = False) -> str:
    r"""Sample mean and its standard error $s / \sqrt n$ of a 1-d sample, via
    :func:`format_estimate`. Only for samples whose variance is finite."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError("a standard error needs at least two samples")
    return format_estimate(x.mean(), x.std(ddof=1) / math.sqrt(x.size), sign=sign)


def format_bound(value: float, limit: float) -> str:
    r"""``'< limit'`` when $|\text{value}| <$ ``limit``: a rounding-level error shown as a bound.

    When the bound does not hold the value itself is written, followed by ``'NOT below'`` and
    the limit, so the output (and nbval) shows the failure.
    """
    value = abs(float(value))
    if value < limit:
        return f"< {limit:.0e}"
    return f"{value:.1e} NOT below {limit:.0e}"


def quantile_with_se(samples, prob: float) -> tuple[float, float]:
    r"""A sample quantile and its standard error from order statistics.

    The number of draws below the $p$-quantile is Binomial$(n, p)$, with standard deviation
    $s = \sqrt{n p (1 - p)}$, so the order statistics of rank $np \pm s$ bracket the quantile
    by about one standard error either side:

    $$\widehat{\mathrm{SE}} = \tfrac12\left(x_{(np + s)} - x_{(np - s)}\right).$$

    It needs no finite variance, which suits heavy-tailed estimators (SUMO).

    Args:
      samples: a 1-d sample (any shape is flattened).
      prob: the probability $p$ in $(0, 1)$.

    Returns:
      ``(quantile, se)`` as floats.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = x.size
    if not 0.0 < prob < 1.0 or n < 2:
        raise ValueError(f"need 0 < prob < 1 and at least two samples, got {prob} and {n}")
    spread = math.sqrt(n * prob * (1.0 - prob))
    rank = n * prob
    lo = int(np.clip(math.floor(rank - spread), 0, n - 1))
    hi = int(np.clip(math.ceil(rank + spread), 0, n - 1))
    return float(np.quantile(x, prob)), 0.5 * float(x[hi] - x[lo])


def format_quantiles(samples, probs: Sequence[float] = (0.1, 0.5, 0.9)) -> str:
    r"""Quantiles of a sample, each rounded to its own standard error (:func:`quantile_with_se`).

    Returns:
      For example ``'median -11.1, 10% -13.0, 90% -10.2'`` (the median first). A quantile
      whose order statistics coincide (a discrete sample) is written to 3 significant digits.
    """
    parts = []
    ordered = sorted(probs, key=lambda p: (p != 0.5, p))
    for prob in ordered:
        value, se = quantile_with_se(samples, prob)
        text = _fixed(value, se_decimals(se)) if se > 0 else f"{value:.3g}"
        name = "median" if prob == 0.5 else f"{100 * prob:g}%"
        parts.append(f"{name} {text}")
    return ", ".join(parts)


def format_clipped_mean(samples, low: float, high: float, *, sign: bool = False) -> str:
    r"""Mean ± SE of the sample clipped to ``[low, high]``, with the clip stated.

    Clipping makes the variance finite, so the SE means what it says, at the price of a bias
    that the caller must judge (the chapter states the clip and how many draws it touched).

    Returns:
      For example ``'-11.02 ± 0.05 (clipped to [-50, 0]; 3 of 10000 draws clipped)'``.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    clipped = np.clip(x, low, high)
    touched = int(np.sum((x < low) | (x > high)))
    return (f"{format_mean(clipped, sign=sign)} (clipped to [{low:g}, {high:g}]; "
            f"{touched} of {x.size} draws clipped)")
