"""Exercise checkers, one module per chapter: ``check_*`` functions return a :class:`Feedback`."""
from ._core import Feedback, compare

__all__ = ["Feedback", "compare"]
