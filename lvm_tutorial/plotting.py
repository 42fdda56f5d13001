"""The book's plot helpers. Each takes an ``ax``, draws on it, and returns it; ``explorer``
turns a drawing function into a live control with a kernel-free player beside it."""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import re
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["density_contours", "scatter", "mean_with_error", "histogram", "training_curve",
           "new_axes", "bars", "arrows", "image_grid", "Explorer", "explorer", "sweep_values",
           "player_html", "draw_figure"]


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


# --------------------------------------------------------------------------- explorers
@dataclasses.dataclass(frozen=True)
class Explorer:
    """A live ipywidgets control and kernel-free players of the same figure, in one output.

    Its mime bundle holds the widget's ``application/vnd.jupyter.widget-view+json``, which
    Jupyter and Colab render as the live control, and ``text/html``, the players, which the
    built book renders instead (``nb_mime_priority_overrides`` in ``_config.yml`` ranks
    ``text/html`` first for the HTML builders: with no kernel the widget view is dead).
    """

    widget: widgets.interactive
    html: str  # one player per control, each with a line saying what it sweeps
    text: str  # the plain-text fallback

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget._repr_mimebundle_()
        return {**bundle, "text/plain": self.text, "text/html": self.html}


# Controls whose values are a list of options (any values, in the order given).
_SELECTIONS = (widgets.Dropdown, widgets.SelectionSlider, widgets.RadioButtons,
               widgets.ToggleButtons)


def _reachable_values(control) -> list:
    """Every value the control can take, in order (on the log grid of a ``FloatLogSlider``)."""
    if isinstance(control, widgets.FloatLogSlider):
        count = round((control.max - control.min) / control.step)
        return [float(control.base ** (control.min + k * control.step)) for k in range(count + 1)]
    if isinstance(control, widgets.IntSlider):
        return list(range(control.min, control.max + 1, control.step))
    if isinstance(control, widgets.FloatSlider):
        count = round((control.max - control.min) / control.step)
        return [round(control.min + k * control.step, 12) for k in range(count + 1)]
    if isinstance(control, _SELECTIONS):
        options = control.options
        if isinstance(options, Mapping):
            return list(options.values())
        return [o[1] if isinstance(o, tuple) and len(o) == 2 else o for o in options]
    raise TypeError(f"explorer: no sweep for a {type(control).__name__} control")


def sweep_values(control, num_values: int = 9) -> list:
    """The settings of ``control`` a player shows, in the control's order: all it can reach
    when there are at most ``num_values``, otherwise ``num_values`` of them spread evenly along
    it (on the log scale for a ``FloatLogSlider``), always with both ends and the control's
    default itself (which replaces its nearest inner setting, or is added beside an end).
    Supports ``IntSlider``, ``FloatSlider``, ``FloatLogSlider`` and the selection controls
    (``Dropdown``, ``SelectionSlider``, ``RadioButtons``, ``ToggleButtons``)."""
    reachable = _reachable_values(control)
    values = list(reachable)
    if len(values) > num_values:
        picks = np.unique(np.round(np.linspace(0, len(values) - 1, num_values)).astype(int))
        values = [values[i] for i in picks]
    if control.value in values:
        return values

    def position(value):
        if isinstance(control, _SELECTIONS):
            return reachable.index(value)
        return np.log(value) if isinstance(control, widgets.FloatLogSlider) else float(value)

    distances = [abs(position(v) - position(control.value)) for v in values]
    nearest = int(np.argmin(distances))
    if 0 < nearest < len(values) - 1:
        values[nearest] = control.value
    else:
        after = position(control.value) > position(values[nearest])
        values.insert(nearest + after, control.value)
    return values


def draw_figure(draw_fn: Callable, width: float = 8.0, height: float = 3.2, **values) -> None:
    """Show ``draw_fn(fig, **values)`` drawn into a new figure of ``width`` x ``height`` inches
    (``values`` left out take ``draw_fn``'s defaults): what an :func:`explorer`'s live control
    shows for one setting."""
    fig = plt.figure(figsize=(width, height), layout="constrained")
    draw_fn(fig, **values)
    plt.show()


def _show(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# matplotlib's player takes its button icons from Font Awesome on a CDN; the book loads nothing
# from elsewhere, so the stylesheet link goes and each icon becomes text.
_ICON_STYLESHEET = re.compile(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">')
_ICON = re.compile(r'<i class="fa ([a-z -]+)"></i>')
_ICON_TEXT = {
    "fa-minus": "&minus;", "fa-plus": "+", "fa-pause": "&#8214;", "fa-play": "&#9654;",
    "fa-play fa-flip-horizontal": "&#9664;", "fa-step-backward": "|&#9664;",
    "fa-step-forward": "&#9654;|", "fa-fast-backward": "|&#9664;&#9664;",
    "fa-fast-forward": "&#9654;&#9654;|",
}


# matplotlib writes RGBA PNG frames; a plot needs few colours, and a palette of 256 (no
# dithering) makes each frame about a third as large with no difference to the eye.
_FRAME = re.compile(r'"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)"')


def _palette_frame(match: re.Match) -> str:
    data = base64.b64decode(re.sub(r"[\\\n]", "", match.group(1)))
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="png", optimize=True)
    return f'"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"'


def player_html(draw_fn: Callable, settings: list[dict], labels: Mapping[str, str] | None = None,
                width: float = 8.0, height: float = 3.2, dpi: float = 80,
                interval_ms: int = 800) -> str:
    """A kernel-free player of ``draw_fn(fig, **setting)`` over ``settings``: matplotlib's
    ``FuncAnimation(...).to_jshtml()``, one PNG frame per setting drawn into one figure of
    ``width`` x ``height`` inches at ``dpi``, titled with the setting (``labels`` names each
    argument). A slider and step buttons pick the frame; the HTML loads nothing from elsewhere."""
    labels = labels or {}
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")

    def draw_frame(setting):
        fig.clear()
        draw_fn(fig, **setting)
        fig.suptitle(", ".join(f"{labels.get(k, k)} = {_show(v)}" for k, v in setting.items()),
                     fontsize="medium")

    animation = FuncAnimation(fig, draw_frame, frames=settings, init_func=lambda: None,
                              interval=interval_ms, repeat=False)
    page = animation.to_jshtml(default_mode="once")
    page = _FRAME.sub(_palette_frame, _ICON_STYLESHEET.sub("", page))
    return _ICON.sub(lambda match: _ICON_TEXT[match.group(1)], page)


def explorer(draw_fn: Callable, *, num_values: int = 9, width: float = 8.0, height: float = 3.2,
             dpi: float = 80, **controls) -> Explorer:
    """``draw_fn(fig, **values)`` under live ``controls`` (ipywidgets) in Jupyter and Colab, and
    under kernel-free players in the static book: one player per control, sweeping it over
    :func:`sweep_values` (``num_values`` settings) with the other controls at their defaults.

    ``draw_fn`` draws into the figure it is given and does not show it; the live control and
    every frame of the players call it alike, in a figure of ``width`` x ``height`` inches
    (frames at ``dpi``). Controls are named after ``draw_fn``'s arguments, as for
    ``ipywidgets.interact``, other than ``num_values``, ``width``, ``height`` and ``dpi``.
    Each frame costs one call of ``draw_fn``, so C controls cost about 9 C calls.
    Display the result (the last expression of a cell): see :class:`Explorer`.

    Example: ``explorer(draw, rho=widgets.FloatSlider(value=0.5, min=0.1, max=0.9))`` with
    ``def draw(fig, rho=0.5): fig.subplots().plot(...)``.
    """
    def show(**values):
        draw_figure(draw_fn, width, height, **values)

    widget = widgets.interactive(show, **controls)
    defaults = {name: control.value for name, control in controls.items()}
    labels = {name: control.description or name for name, control in controls.items()}
    parts = []
    for name, control in controls.items():
        values = sweep_values(control, num_values)
        others = ", ".join(f"{labels[k]} = {_show(v)}" for k, v in defaults.items() if k != name)
        caption = (f"<p>{html.escape(labels[name])} from {html.escape(_show(values[0]))} to "
                   f"{html.escape(_show(values[-1]))}, {len(values)} settings"
                   + (f" ({html.escape(others)})" if others else "") + ":</p>")
        settings = [{**defaults, name: value} for value in values]
        parts.append(caption + player_html(draw_fn, settings, labels, width, height, dpi))
    text = f"explorer of {draw_fn.__name__} over {', '.join(controls)}"
    return Explorer(widget, '<div class="explorer">' + "\n".join(parts) + "</div>", text)
