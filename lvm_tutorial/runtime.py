"""What the first cell of every chapter reports: the jax version and the device it runs on."""
from __future__ import annotations

import jax

__all__ = ["describe_runtime"]


def describe_runtime() -> None:
    """Print one line naming jax's version and devices; warn where no GPU is attached."""
    devices = ", ".join(sorted({d.platform for d in jax.devices()}))
    line = f"jax {jax.__version__} on {devices}"
    if jax.default_backend() == "cpu":
        line += " (no GPU: the default settings are sized for a CPU; FULL = True wants a GPU)"
    print(line)
