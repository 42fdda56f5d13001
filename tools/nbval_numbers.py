"""nbval that compares printed floats to their printed precision (a pytest plugin).

Load it next to nbval: ``PYTHONPATH=tools python -m pytest -p nbval_numbers --nbval ...``.

nbval compares each committed text output with a fresh run's character for character.
Floating-point low bits differ between machines (FMA or not, thread count, matmul kernels,
GPU), so a printed number can end one unit off in its last digit. This plugin wraps
``nbval.plugin.IPyNbCell.compare_outputs``: before nbval's own comparison, each text field of
a fresh output (a stream's text, ``text/*`` data, an error's ``evalue``) is paired with the
committed one that nbval will compare it with (the k-th of the same stream name or MIME type),
both sanitised as nbval sanitises them, and cut into numbers and the text between them. When
the two match by the rule below, the fresh text is replaced by the committed one; otherwise
it is left alone, and nbval reports the difference as usual. Everything else stays strict:
missing, extra or reordered outputs, images and non-text fields are nbval's business.

The rule (in the spirit of pytest's doctest ``NUMBER`` option):

* A number is an optional sign (``+``, ``-`` or the Unicode minus), digits with an optional
  fraction (``1.25``, ``.5``) and an optional exponent (``e-07``), not glued to a letter, digit,
  underscore or dot: ``x1``, ``L_2``, ``float32``, ``0xADDRESS``, ``2D`` and ``0.10.2`` are text.
  A dot without a digit after it (``5.`` ending a sentence) is text too.
* A float (a fraction or an exponent) matches when its exponent is written the same and its
  value is at most one unit of the committed number's last printed digit away: ``0.29`` vs
  ``0.3`` match, ``2.558`` vs ``2.560`` do not, ``9.9e-06`` vs ``1.0e-05`` do not. The printed
  decimals are compared exactly (integer arithmetic, no rounding), so ``-0.0000`` and
  ``+0.0000`` match, and no epsilon is needed.
* An integer must be written the same: counts, indices, seeds, shapes do not drift.
* The text between numbers must be identical, except that a run of spaces touching a number
  may shrink by as many characters as the number grew (or grow as it shrank), so that
  padded columns stay aligned: ``" -0.0000"`` vs ``"  0.0000"``.

``NBVAL_PIN_CPU=1`` pins each pytest-xdist worker (``gw0``, ``gw1``, ...) to one distinct
allowed core at start-up (a run without workers: the process itself); the kernels the worker
starts inherit the one-core affinity, and XLA sizes its CPU thread pool from it, as under
``taskset -c N``.
"""
from __future__ import annotations

import copy
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

import pytest

_SIGNS = "+\\-\u2212"
NUMBER = re.compile(
    rf"""
    (?<![\w.])                               # not glued to a word, an identifier, a version
    [{_SIGNS}]?
    (?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)         # 12, 1.25, .5
    (?:[eE][{_SIGNS}]?[0-9]+)?               # e-07
    (?!\w)(?!\.[0-9])                        # not followed by a letter or more of a version
    """,
    re.VERBOSE,
)
_PARTS = re.compile(
    rf"(?P<sign>[{_SIGNS}]?)(?P<whole>[0-9]*)(?:\.(?P<fraction>[0-9]+))?"
    rf"(?:[eE](?P<exponent>[{_SIGNS}]?[0-9]+))?"
)


class Printed(NamedTuple):
    """A printed number: its value is ``digits * 10**-decimals`` (times 10**exponent)."""

    digits: int  # signed, all the mantissa's digits as one integer
    decimals: int
    exponent: str | None  # as written, Unicode minus read as "-"

    @property
    def is_float(self) -> bool:
        return self.decimals > 0 or self.exponent is not None


def parse_number(token: str) -> Printed:
    """Read a token that `NUMBER` found."""
    parts = _PARTS.fullmatch(token)
    if parts is None:
        raise ValueError(f"not a number: {token!r}")
    fraction = parts["fraction"] or ""
    digits = int(parts["whole"] + fraction)
    exponent = parts["exponent"]
    return Printed(
        digits=-digits if parts["sign"] in ("-", "\u2212") else digits,
        decimals=len(fraction),
        exponent=None if exponent is None else exponent.replace("\u2212", "-"),
    )


def split_numbers(text: str) -> tuple[list[str], list[str]]:
    """The texts between numbers (one more than the numbers) and the numbers, as written."""
    texts, numbers, start = [], [], 0
    for found in NUMBER.finditer(text):
        texts.append(text[start:found.start()])
        numbers.append(found.group())
        start = found.end()
    texts.append(text[start:])
    return texts, numbers


def number_matches(committed: str, fresh: str) -> bool:
    """Whether the fresh number token is the committed one up to a unit in its last digit."""
    if committed == fresh:
        return True
    ref, new = parse_number(committed), parse_number(fresh)
    if not (ref.is_float and new.is_float) or ref.exponent != new.exponent:
        return False
    decimals = max(ref.decimals, new.decimals)  # both as integers in units of 10**-decimals
    ref_unit: int = 10 ** (decimals - ref.decimals)  # the committed number's last digit
    new_unit: int = 10 ** (decimals - new.decimals)
    return abs(ref.digits * ref_unit - new.digits * new_unit) <= ref_unit


def _spaces_around(text: str) -> tuple[int, str, int]:
    core = text.strip(" ")
    if not core:
        return len(text), "", 0
    return len(text) - len(text.lstrip(" ")), core, len(text) - len(text.rstrip(" "))


def _repadded(committed: str, fresh: str, left: int | None, right: int | None) -> bool:
    """Whether `fresh` is `committed` with the spaces touching its numbers resized to keep
    them aligned. `left` and `right`: how many characters the number before and after the
    text grew by (None: there is none)."""
    ref_lead, ref_core, ref_trail = _spaces_around(committed)
    new_lead, new_core, new_trail = _spaces_around(fresh)
    if ref_core != new_core:
        return False
    if not ref_core:  # spaces only, touching the numbers on both sides
        grew = {0, left or 0, right or 0, (left or 0) + (right or 0)}
        return ref_lead - new_lead in grew
    return ref_lead - new_lead in {0, left or 0} and ref_trail - new_trail in {0, right or 0}


def text_matches(committed: str, fresh: str) -> bool:
    """Whether two texts are the same but for floats within a unit of their last digit."""
    if committed == fresh:
        return True
    ref_texts, ref_numbers = split_numbers(committed)
    new_texts, new_numbers = split_numbers(fresh)
    if len(ref_numbers) != len(new_numbers):
        return False
    if not all(map(number_matches, ref_numbers, new_numbers)):
        return False
    grew = [len(new) - len(ref) for ref, new in zip(ref_numbers, new_numbers, strict=True)]
    for i, (ref, new) in enumerate(zip(ref_texts, new_texts, strict=True)):
        left = grew[i - 1] if i > 0 else None
        right = grew[i] if i < len(grew) else None
        if ref != new and not _repadded(ref, new, left, right):
            return False
    return True


Output = MutableMapping[str, Any]


def _text_fields(
    output: Output, skip: Sequence[str]
) -> Iterator[tuple[tuple[str, str], MutableMapping[str, Any], str]]:
    """(what nbval pairs it by, where it lives, its key) for each text field of an output."""
    kind = output.get("output_type")
    if kind == "stream":
        yield ("stream", str(output.get("name"))), output, "text"
    elif kind == "error":
        if "evalue" not in skip:
            yield ("error", "evalue"), output, "evalue"
    elif isinstance(output.get("data"), Mapping):
        for mime in output["data"]:
            if mime.startswith("text/") and mime not in skip:
                yield ("data", mime), output["data"], mime


def _copy(output: Output) -> Output:
    output = copy.copy(output)
    if isinstance(output.get("data"), Mapping):
        output["data"] = copy.copy(output["data"])
    return output


def align_outputs(
    fresh: Sequence[Output],
    committed: Sequence[Output],
    skip: Sequence[str] = (),
    sanitize: Callable[[str], str] = lambda text: text,
) -> list[Output]:
    """Copies of the fresh outputs, each text field that `text_matches` its committed
    counterpart (after `sanitize`) replaced by the committed text. The counterpart is the one
    nbval compares it with: the k-th field of the same stream name, MIME type or ``evalue``."""
    committed_texts: defaultdict[tuple[str, str], list[Any]] = defaultdict(list)
    for output in committed:
        for key, box, field in _text_fields(output, skip):
            committed_texts[key].append(box.get(field))
    seen: Counter[tuple[str, str]] = Counter()
    aligned = []
    for output in fresh:
        output = _copy(output)
        for key, box, field in _text_fields(output, skip):
            index, seen[key] = seen[key], seen[key] + 1
            if index >= len(committed_texts[key]):
                continue
            ref, new = committed_texts[key][index], box.get(field)
            if (isinstance(ref, str) and isinstance(new, str) and ref != new
                    and text_matches(sanitize(ref), sanitize(new))):
                box[field] = ref
        aligned.append(output)
    return aligned


def pin_cpu(config: pytest.Config) -> int | None:
    """Under NBVAL_PIN_CPU=1, pin this process to one allowed core: xdist worker gwN to the
    N-th (modulo their number), a run without workers to the first; an xdist controller
    stays as is. Returns the core, or None."""
    if os.environ.get("NBVAL_PIN_CPU", "0") in ("", "0"):
        return None
    if not hasattr(os, "sched_setaffinity"):
        raise pytest.UsageError("NBVAL_PIN_CPU=1 needs os.sched_setaffinity (Linux)")
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        index = int(re.sub(r"\D", "", str(worker.get("workerid"))) or 0)
    elif config.getoption("dist", "no") != "no":
        return None
    else:
        index = 0
    cores = sorted(os.sched_getaffinity(0))
    core = cores[index % len(cores)]
    os.sched_setaffinity(0, {core})
    return core


_original_compare: Callable[..., bool] | None = None


def _install() -> None:
    global _original_compare
    from nbval.plugin import IPyNbCell  # type: ignore[import-untyped]

    if _original_compare is not None:
        return
    original = _original_compare = IPyNbCell.compare_outputs

    def compare_outputs(self: Any, test: Any, ref: Any, skip_compare: Any = None) -> bool:
        skip = skip_compare or self.parent.skip_compare
        aligned = align_outputs(test, ref, skip, self.sanitize)
        return bool(original(self, aligned, ref, skip_compare))

    IPyNbCell.compare_outputs = compare_outputs


def pytest_configure(config: pytest.Config) -> None:
    pin_cpu(config)
    _install()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _original_compare
    if _original_compare is not None:
        from nbval.plugin import IPyNbCell

        IPyNbCell.compare_outputs = _original_compare
        _original_compare = None


def pytest_report_header(config: pytest.Config) -> str:
    pinned = os.environ.get("NBVAL_PIN_CPU", "0") not in ("", "0")
    return ("nbval_numbers: floats match to a unit of their last printed digit"
            + ("; each worker pinned to one core" if pinned else ""))
