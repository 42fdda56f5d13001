"""The book's own invariants: every notebook committed executed, listed, and set up alike."""
import json
import re
from pathlib import Path

import pytest
import yaml


ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def toc_files():
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def code_cells(path):
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def test_every_page_in_the_toc_exists_and_every_notebook_is_listed():
    listed = toc_files()
    for name in listed:
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), name
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


def test_config_essentials():
    assert CONFIG["execute"]["execute_notebooks"] == "force"
    assert CONFIG["only_build_toc_files"] is True
    assert {".venv", ".pytest_cache"} <= set(CONFIG["exclude_patterns"])
    assert "mathjax3_config" in CONFIG["sphinx"]["config"]   # `mathjax_config` does nothing
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed_top_to_bottom(path):
    cells = code_cells(path)
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"execution counts {counts}: run `make execute`"
    assert sum(bool(c.get("outputs")) for c in cells) >= len(cells) // 3, "outputs were stripped"
    for cell in cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors or "raises-exception" in tags(cell), "".join(cell["source"])[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_without_replacing_colabs_jax(path):
    # which repository and ref it installs: tests/test_colab.py
    first = code_cells(path)[0]
    source = "".join(first["source"])
    assert "--no-deps" in source, "installing with dependencies could replace Colab's jax"
    assert "hide-input" in tags(first)
    assert "nbval-ignore-output" in tags(first), "it names the reader's device and jax version"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2].isdigit() and p.stem[:2] != "00"],
                         ids=lambda p: p.name)
def test_chapter_has_a_parameters_cell_with_full_switch(path):
    params = [c for c in code_cells(path) if "parameters" in tags(c)]
    assert len(params) == 1 and re.search(r"^FULL = False", "".join(params[0]["source"]), re.M)


def notebook_output_text(path):
    text = []
    for cell in code_cells(path):
        for out in cell.get("outputs", []):
            text.append("".join(out.get("text", "")))
            text.append("".join(out.get("data", {}).get("text/plain", "")))
            text.append(out.get("evalue", ""))
    return "\n".join(text)


def test_every_number_in_the_errata_is_printed_by_the_chapter_it_cites():
    """The errata copy measured numbers from chapter outputs: they must still be there."""
    rows = re.split(r"^\* - ", (ROOT / "book" / "errata.md").read_text(), flags=re.M)[1:]
    checked = 0
    for row in rows:
        where = re.split(r"^  - ", row, flags=re.M)[-1]
        cited = set(re.findall(r"\b(0\d_\w+?)(?:\.ipynb|`)", where))
        numbers = re.findall(r"(?<![\w.§])\d+\.\d+(?:e[+-]?\d+)?", re.sub(r"\([^)]*\)", "", where))
        if not cited or not numbers:
            continue
        outputs = "\n".join(notebook_output_text(ROOT / "book" / f"{name}.ipynb") for name in cited)
        for number in numbers:
            assert number in outputs, f"errata number {number} not in the outputs of {sorted(cited)}"
            checked += 1
    assert checked >= 10


PLUS_MINUS = re.compile(r"([-+−]?\d[\d.]*)\s*(?:±|\+-|\+/-)\s*(\d[\d.]*)")


def printed_decimals(number):
    """Decimal places a printed number shows."""
    return len(number.split(".")[1]) if "." in number else 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_estimate_is_printed_to_the_digits_its_standard_error_supports(path):
    """`a ± s`: s at its leading digit (two when that is 1), a at the same place (report.py)."""
    from lvm_tutorial.report import se_decimals
    bad = []
    for value, se in PLUS_MINUS.findall(notebook_output_text(path)):
        value, se = value.rstrip("."), se.rstrip(".")
        if "." not in se + value:                 # integers: only for an SE rounded at units;
            wrong = float(se) <= 0 or se_decimals(float(se)) != 0   # tens or more: '(m ± s)e+NN'
        else:
            wrong = float(se) <= 0 or printed_decimals(se) != se_decimals(float(se)) \
                or printed_decimals(value) != printed_decimals(se)
        if wrong:
            bad.append(f"{value} ± {se}")
    assert not bad, f"estimates with more (or fewer) digits than their SE supports: {bad}"


def test_the_estimate_check_catches_false_precision():
    """Negative control for the test above, on the issue's own example."""
    from lvm_tutorial.report import format_estimate, se_decimals
    (value, se), = PLUS_MINUS.findall("IWAE -18.239 ± 0.21 nats")
    assert printed_decimals(se) != se_decimals(float(se))
    (value, se), = PLUS_MINUS.findall(f"IWAE {format_estimate(-18.239, 0.21)} nats")
    assert printed_decimals(se) == se_decimals(float(se)) == printed_decimals(value) == 1
    (value, se), = PLUS_MINUS.findall("ratio 10540 ± 130")           # the trailing 0 claims units
    assert "." not in value + se and se_decimals(float(se)) != 0
    (value, se), = PLUS_MINUS.findall(f"ratio {format_estimate(10538.0, 131.0)}")
    assert printed_decimals(se) == se_decimals(float(se)) == printed_decimals(value) == 3


# Chapters whose interactive cell their owners move to plotting.explorer (the same pages as
# PENDING_PLAYERS in tools/browser_check.py); an entry whose chapter has moved fails.
PENDING_EXPLORER: set = set()
BARE_WIDGET = re.compile(r"\bwidgets\.interact(?:ive)?\s*\(")


def bare_widget_cells(cells):
    """Sources of the cells that build a widget without a kernel-free player."""
    return [s for s in ("".join(c["source"]) for c in cells) if BARE_WIDGET.search(s)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_interactive_cells_use_the_explorer(path):
    """A widget is dead in the static book; plotting.explorer adds its kernel-free players.
    Its frames are PNGs that differ between machines, so its cell ignores its output."""
    cells = code_cells(path)
    bare = bare_widget_cells(cells)
    if path.name in PENDING_EXPLORER:
        assert bare, f"{path.name} uses plotting.explorer: remove it from PENDING_EXPLORER"
    else:
        assert not bare, f"a bare widget, dead in the book; use plotting.explorer: {bare}"
    for cell in cells:
        if "plotting.explorer(" in "".join(cell["source"]):
            assert "nbval-ignore-output" in tags(cell)


# Pages without a figure to explore (none today; name a page here only with a reason).
WITHOUT_EXPLORER: set = set()


def explorer_cells(cells):
    return [c for c in cells if "plotting.explorer(" in "".join(c["source"])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_has_an_interactive_figure(path):
    """Every chapter lets the reader move a control, live in Jupyter and as a player online."""
    if path.name in WITHOUT_EXPLORER:
        return
    assert explorer_cells(code_cells(path)), f"{path.name} has no plotting.explorer cell"


def test_the_explorer_count_catches_a_chapter_without_one():
    cell = lambda source: {"source": [source]}
    assert not explorer_cells([cell("plotting.draw_figure(draw)"), cell("print(1)")])
    assert explorer_cells([cell("plotting.explorer(\n    draw, x=s\n)")])


def test_the_bare_widget_check_catches_interact():
    """Negative control: the old cells of chapters 1 and 3 are caught, the new ones are not."""
    cell = lambda source: {"source": [source]}
    assert bare_widget_cells([cell("widgets.interact(\n    show, x=(0, 5)\n);")])
    assert bare_widget_cells([cell("explorer = widgets.interactive(explore, x=s)")])
    assert not bare_widget_cells([cell("plotting.explorer(\n    show, x=s\n)")])
