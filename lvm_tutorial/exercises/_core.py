"""What every exercise checker shares: run the reader's function beside the reference and
turn the first disagreement into a targeted hint."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np

__all__ = ["Feedback", "compare", "match_suspect"]


class Feedback(NamedTuple):
    """A checker's verdict: ``passed`` and a message (the hint when it failed)."""
    passed: bool
    message: str

    def __str__(self) -> str:
        return ("Correct: " if self.passed else "Not yet: ") + self.message

    def _repr_pretty_(self, p, cycle):  # IPython prints the message, not the tuple
        p.text(str(self))


def compare(candidate: Callable, reference: Callable, cases: Sequence[tuple],
            diagnose: Callable[[np.ndarray, np.ndarray, tuple], str | None] | None = None,
            rtol: float = 1e-4, atol: float = 1e-5, success: str = "matches the reference.") -> Feedback:
    """Call both functions on each argument tuple in ``cases`` and compare outputs.

    ``diagnose(got, want, args)`` is asked for a targeted hint when they differ; it returns a
    message, or None for the generic one. Exceptions in the reader's code become feedback.
    The reader's code runs under JAX's default implicit rank promotion (``"allow"``), whatever
    the caller's setting: the package broadcasts explicitly, a reader need not.
    """
    for args in cases:
        want = np.asarray(reference(*args))
        try:
            with jax.numpy_rank_promotion("allow"):
                got = np.asarray(candidate(*args))
        except Exception as err:  # the reader's code: report, never crash the notebook
            return Feedback(False, f"your function raised {type(err).__name__}: {err}")
        if got.shape != want.shape:
            return Feedback(False, f"your result has shape {got.shape}, expected {want.shape}.")
        if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=False):
            hint = diagnose(got, want, args) if diagnose is not None else None
            worst = float(np.max(np.abs(got - want)))
            return Feedback(False, hint or f"your result differs from the reference by up to {worst:.3g}.")
    return Feedback(True, success)


def match_suspect(got, suspects, rtol: float = 1e-4, atol: float = 1e-4) -> str | None:
    """The hint of the first ``(value, hint)`` in ``suspects`` whose known-wrong value ``got``
    equals, or None: a checker lists the likely mistakes and lets this find the reader's."""
    for value, hint in suspects:
        if np.shape(value) == np.shape(got) and np.allclose(got, value, rtol=rtol, atol=atol):
            return hint
    return None
