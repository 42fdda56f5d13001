"""The book's plot helpers. Each takes an ``ax``, draws on it, and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["density_contours", "scatter", "mean_with_error", "histogram", "training_curve",
           "new_axes"]


def new_axes(ncols: int = 1, nrows: int = 1, width: float = 4.0, height: float = 3.2, **kwargs):
    """A figure with a grid of axes of a size that reads well in the book."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             constrained_layout=True, squeeze=False, **kwargs)
    return fig, axes.ravel() if axes.size > 1 else axes[0, 0]


def density_contours(ax, log_prob_fn, xlim=(-4, 4), ylim=(-4, 4), num: int = 120, levels: int = 12,
                     cmap: str = "viridis", filled: bool = True):
    """Contours of ``exp(log_prob_fn(points))`` on a grid; ``log_prob_fn`` maps ``(N, 2)`` to ``(N,)``."""
    xs, ys = np.linspace(*xlim, num), np.linspace(*ylim, num)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(log_prob_fn(grid))).reshape(num, num)
    draw = ax.contourf if filled else ax.contour
    draw(xs, ys, density, levels=levels, cmap=cmap)
    ax.set(xlim=xlim, ylim=ylim)
    return ax


def scatter(ax, points, labels=None, size: float = 4.0, alpha: float = 0.6, **kwargs):
    """A 2-D scatter of ``points`` (N, 2), coloured by integer ``labels`` when given."""
    points = np.asarray(points)
    ax.scatter(points[:, 0], points[:, 1], s=size, alpha=alpha,
               c=None if labels is None else np.asarray(labels), **kwargs)
    return ax


def mean_with_error(ax, x, mean, stderr, label=None, num_se: float = 2.0, **kwargs):
    """A line of ``mean`` with a band of ``num_se`` standard errors."""
    x, mean, stderr = map(np.asarray, (x, mean, stderr))
    (line,) = ax.plot(x, mean, marker="o", ms=3, label=label, **kwargs)
    ax.fill_between(x, mean - num_se * stderr, mean + num_se * stderr, color=line.get_color(),
                    alpha=0.2)
    return ax


def histogram(ax, values, bins=60, label=None, density: bool = True, **kwargs):
    """A step histogram of ``values`` (non-finite entries dropped)."""
    values = np.asarray(values).ravel()
    ax.hist(values[np.isfinite(values)], bins=bins, density=density, histtype="stepfilled",
            alpha=0.5, label=label, **kwargs)
    return ax


def training_curve(ax, values, label=None, smooth: int = 1, **kwargs):
    """Per-step ``values`` against the step, optionally averaged over windows of ``smooth`` steps."""
    values = np.asarray(values)
    if smooth > 1:
        usable = len(values) // smooth * smooth
        values = values[:usable].reshape(-1, smooth).mean(axis=1)
    ax.plot(np.arange(len(values)) * smooth, values, label=label, **kwargs)
    ax.set_xlabel("step")
    return ax


def bars(ax, labels, values, errors=None, colors=None, annotate: str | None = "{:.2f}", **kwargs):
    """Labelled bars of ``values`` (with ``errors`` as error bars when given), each annotated
    with its value formatted by ``annotate`` (None for no text)."""
    values = np.asarray(values, dtype=float)
    positions = np.arange(len(values))
    ax.bar(positions, values, yerr=None if errors is None else np.asarray(errors), color=colors,
           capsize=3, **kwargs)
    ax.set_xticks(positions, labels)
    ax.axhline(0.0, color="black", lw=0.6)
    if annotate is not None:
        for pos, value in zip(positions, values):
            ax.annotate(annotate.format(value), (pos, value), ha="center",
                        va="bottom" if value >= 0 else "top", fontsize=8,
                        xytext=(0, 2 if value >= 0 else -2), textcoords="offset points")
    return ax


def arrows(ax, points, vectors, color=None, scale: float = 1.0, **kwargs):
    """Arrows from each of ``points`` (N, 2) along ``vectors`` (N, 2), drawn in data units times ``scale``."""
    points, vectors = np.asarray(points), scale * np.asarray(vectors)
    ax.quiver(points[:, 0], points[:, 1], vectors[:, 0], vectors[:, 1], color=color, angles="xy",
              scale_units="xy", scale=1.0, **kwargs)
    return ax


def image_grid(ax, images, image_shape=(8, 8), ncols: int = 10, cmap: str = "Greys", **kwargs):
    """Tile ``images`` (N, H*W) with values in [0, 1] into one picture, ``ncols`` per row."""
    images = np.asarray(images, dtype=float).reshape(-1, *image_shape)
    nrows = -(-len(images) // ncols)
    height, width = image_shape
    canvas = np.full((nrows * (height + 1) - 1, ncols * (width + 1) - 1), np.nan)
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        canvas[row * (height + 1):row * (height + 1) + height,
               col * (width + 1):col * (width + 1) + width] = image
    ax.imshow(canvas, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest", **kwargs)
    ax.set_axis_off()
    return ax
