"""plotting.explorer: one output with the live widget and kernel-free players of the same
drawing function, one player per control, whose frames differ as the control moves."""
import base64
import io
import re
import warnings

import ipywidgets as widgets
import matplotlib
import numpy as np
import pytest
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure
from PIL import Image

from lvm_tutorial import plotting

matplotlib.use("Agg")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FRAME = re.compile(r'"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)"')
TITLE_ROWS = 12  # the frame title's rows at dpi 40
EXTERNAL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.I)


def decoded_frames(player: str) -> list[np.ndarray]:
    """The pixels (RGB) of each frame of one player, in order."""
    frames = []
    for data in FRAME.findall(player):
        png = base64.b64decode(re.sub(r"[\\\n]", "", data))
        frames.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    return frames


def players(html: str) -> list[str]:
    """An explorer's HTML cut into its players (each starts at its caption)."""
    return html.split("<p>")[1:]


def differ(a, b) -> bool:
    """Two frames differ to the eye: over 1% of the pixels below the title change by more
    than 40 of 255 (each frame has its own palette, which moves some colours by up to ~20)."""
    change = np.abs(a[TITLE_ROWS:].astype(int) - b[TITLE_ROWS:].astype(int)).max(-1)
    return np.mean(change > 40) > 0.01


def all_distinct(frames) -> bool:
    return all(differ(a, b) for i, a in enumerate(frames) for b in frames[i + 1 :])


def make_draw(calls, use_values=True):
    """A drawing function of two controls that logs its arguments; with ``use_values`` False
    it ignores them (a frozen picture: the negative control)."""

    def draw(fig, shift=0.5, spread=2):
        calls.append({"shift": shift, "spread": spread})
        ax = fig.subplots()
        x = np.linspace(-3, 3, 50)
        if use_values:
            ax.plot(x, np.exp(-((x - shift) ** 2) / spread))
        else:
            ax.plot(x, np.exp(-(x**2)))
        ax.set(xlim=(-3, 3), ylim=(0, 1.1))

    return draw


def controls():
    return {
        "shift": widgets.FloatSlider(value=0.5, min=-1.0, max=1.0, step=0.25),
        "spread": widgets.IntSlider(value=2, min=1, max=4),
    }


@pytest.fixture(scope="module")
def explored():
    calls = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "FigureCanvasAgg is non-interactive")
        explorer = plotting.explorer(
            make_draw(calls), width=3.0, height=2.0, dpi=40, **controls()
        )
    return explorer, calls


def test_the_bundle_holds_the_live_widget_and_the_player(explored):
    explorer, _ = explored
    bundle = explorer._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == explorer.widget.model_id
    assert isinstance(explorer.widget, widgets.interactive)
    assert bundle["text/html"] == explorer.html
    assert 'class="anim-slider"' in bundle["text/html"]
    assert bundle["text/plain"].startswith("explorer of draw")
    # negative control: a bare interact widget has no player for the static book
    assert "text/html" not in explorer.widget._repr_mimebundle_()


def test_one_player_per_control_over_its_sweep(explored):
    explorer, calls = explored
    sweeps = {
        name: plotting.sweep_values(c, 9) for name, c in controls().items()
    }
    assert sweeps == {"shift": [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0],
                      "spread": [1, 2, 3, 4]}
    cut = players(explorer.html)
    assert len(cut) == 2
    assert [len(decoded_frames(p)) for p in cut] == [9, 4]
    assert "shift from -1 to 1, 9 settings (spread = 2)" in cut[0]
    # the widget draws the default once; then each frame calls the same function
    defaults = {"shift": 0.5, "spread": 2}
    expected = [{**defaults, "shift": v} for v in sweeps["shift"]]
    expected += [{**defaults, "spread": v} for v in sweeps["spread"]]
    assert calls == [defaults] + expected


def test_frames_differ_as_the_control_moves(explored):
    # measured at dpi 40: at least 4% of pixels differ between any two frames here, none
    # (by more than 15 of 255) between frames of a drawing that ignores the controls
    explorer, _ = explored
    for player in players(explorer.html):
        assert all_distinct(decoded_frames(player))
    # negative control: a drawing that ignores the controls
    frozen = plotting.explorer(
        make_draw([], use_values=False),
        width=3.0, height=2.0, dpi=40, **controls(),
    )
    for player in players(frozen.html):
        frames = decoded_frames(player)
        assert not any(differ(frames[0], f) for f in frames[1:])


def test_the_player_loads_nothing_from_elsewhere(explored):
    explorer, _ = explored
    assert not EXTERNAL.findall(explorer.html)
    assert 'class="fa' not in explorer.html  # icons are text, not a web font
    assert 'title="Previous frame"' in explorer.html
    # negative control: matplotlib's own player asks a CDN for its icons
    fig = Figure(figsize=(1, 1), dpi=20)
    raw = FuncAnimation(fig, lambda i: None, frames=2, init_func=lambda: None)
    assert EXTERNAL.findall(raw.to_jshtml())


def test_palette_frames_match_the_rendered_figure():
    """The palette of 256 colours leaves a plot as it was: under 5% of the pixels change, and
    under 0.1% by more than 16 of 255 (measured: 1.1% and none, by at most 2)."""
    fig = Figure(figsize=(3.0, 2.0), dpi=60, layout="constrained")
    make_draw([])(fig, shift=0.25, spread=3)
    fig.suptitle("a title")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    png = base64.b64encode(buffer.getvalue()).decode()
    match = FRAME.search(f'"data:image/png;base64,{png}"')
    converted = decoded_frames(plotting._palette_frame(match))[0].astype(int)
    original = np.asarray(Image.open(buffer).convert("RGB")).astype(int)
    change = np.abs(converted - original).max(axis=-1)
    assert np.mean(change > 0) < 0.05 and np.mean(change > 16) < 0.001
    # negative control: a palette of 4 colours moves 4% of the pixels by more than 16
    coarse = Image.fromarray(original.astype(np.uint8)).quantize(4).convert("RGB")
    change = np.abs(np.asarray(coarse).astype(int) - original).max(axis=-1)
    assert np.mean(change > 16) > 0.001


@pytest.mark.parametrize(
    "control, expected",
    [
        # both ends and the default (4, beside the end 1) kept: 10 settings
        (widgets.IntSlider(value=4, min=1, max=64),
         [1, 4, 9, 17, 25, 33, 40, 48, 56, 64]),
        # the default replaces its nearest inner setting
        (widgets.IntSlider(value=16, min=2, max=64),
         [2, 10, 16, 25, 33, 41, 48, 56, 64]),
        # few reachable values: all of them
        (widgets.FloatSlider(value=0.5, min=0.1, max=0.9, step=0.1),
         [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
        (widgets.Dropdown(options=["IWAE", "SUMO"], value="SUMO"), ["IWAE", "SUMO"]),
        (widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64], value=4),
         [1, 2, 4, 8, 16, 32, 64]),
        # options spread by their place in the list, whatever their values
        (widgets.Dropdown(options=list("abcdefghijklmnop"), value="b"),
         list("abcegijlnp")),
    ],
)
def test_sweep_values(control, expected):
    assert plotting.sweep_values(control, 9) == expected


def test_sweep_values_of_a_log_slider_are_spread_on_the_log_scale():
    values = plotting.sweep_values(
        widgets.FloatLogSlider(value=2.0, base=10, min=-1, max=1, step=0.05), 9
    )
    assert len(values) == 9 and 2.0 in values
    steps = np.diff(np.log10([v for v in values if v != 2.0]))
    np.testing.assert_allclose(steps[steps < 0.3], 0.25, atol=1e-9)


def test_an_unsupported_control_is_refused():
    with pytest.raises(TypeError, match="no sweep for a Text control"):
        plotting.sweep_values(widgets.Text(value="a"))


def test_the_live_control_redraws_when_moved():
    """The widget stays live: moving a control calls the drawing function with the new
    setting (in Jupyter the Output widget shows that figure)."""
    calls, sliders = [], controls()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "FigureCanvasAgg is non-interactive")
        plotting.explorer(make_draw(calls), num_values=2, dpi=20, **sliders)
        calls.clear()
        sliders["shift"].value = -0.75
        sliders["spread"].value = 4
    assert calls == [{"shift": -0.75, "spread": 2}, {"shift": -0.75, "spread": 4}]
