"""The book's notation, checked over every chapter (book/notation.md states it).

Each rule below is a use of a reserved symbol in a sense other than the one the notation page
gives it, taken from the course's own earlier drafts: $m$ as a log-sum-exp maximum or as $q$'s
mean, $K$ as SUMO's random count, $\\sigma$ as $q$'s scale, $N$ as a number of samples or of
clusters, $D$ as a number of devices. The rules are searched in the math of every markdown cell
and in every printed output (stdout and plain-text results; quotations of a source's own code
are not printed, so a printed use is the course's). A regular expression cannot understand a
sentence, so a new clash of a kind not listed passes: the rules catch the regressions that have
happened, and the negative controls show that each rule still fires.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))
NOTATION = BOOK / "notation.md"
# the other pages; the notation page itself writes each source's symbols in its tables
PAGES = sorted(p for p in BOOK.glob("*.md") if p != NOTATION)
# the pages that speak of SUMO, whose m is the only meaning m has
SUMO_CHAPTERS = {
    "06_sumo", "07_funnel", "08_density_estimation", "09_scaling_out", "errata", "jax_essentials"
}

_N = r"\\mathcal\s*\{?N\}?"  # \mathcal N or \mathcal{N}
_TEXT = re.compile(r"\\(?:mathrm|text|textrm|operatorname|mathsf|mathtt)\s*\{[^{}]*\}")

# (symbol on the notation page, what the rule catches, pattern in math, pattern in output)
RULES = [
    ("$m$", "m as a log-sum-exp maximum", r"(?<![\\A-Za-z])m\s*=\s*\\max", r"\bm\s*=\s*max"),
    ("$m$", "m as q's mean", _N + r"\(\s*m\s*,", None),
    (
        "$J$; $j$",
        "K as SUMO's random number of terms",
        r"P\(\s*(?:K|\\mathcal\s*\{?K\}?)\s*\\ge"
        r"|\\mathbb\s*\{?E\}?\s*\[\s*K\s*\]|\\min\(\s*K\b|K_\{?\\max"
        r"|(?<![A-Za-z_{])m\s*\+\s*K\b|\bK\s*\+\s*m\b"
        r"|\\sum_\{j\s*=\s*1\}\^\{?K\}?\s*(?:\\frac\s*\{?\s*)?\\Delta"
        r"|\\mathcal\s*\{?K\}?|K_b\b|\\mid\s*K\s*=",
        r"E\[K\]|P\(K\s*>=|\bK clipped|largest K\b|\bK drawn|with K\s*[<>]|m \+ K\b",
    ),
    (
        "$\\mu$, $s$",
        "sigma as q's scale",
        _N + r"\(\s*\\mu\s*,\s*\\sigma"  # \operatorname{diag} is removed first
        r"|" + _N + r"\(\s*\\phi\s*,\s*\\sigma|\\sigma_\\phi|\\mu\s*\+\s*\\sigma\s*\\odot"
        r"|\(\s*\\mu\s*,\s*\\log\s*\\sigma\s*\)",
        r"log sigma",
    ),
    (
        "$x_1, \\dots, x_N$; $n$",
        "N as a number of samples or of clusters",
        r"(?<![A-Za-z\\])z_n\b|(?<![A-Za-z\\])z_m\b|\\ne\s*n\s*\}|\bK\s*/\s*N\b"
        r"|\bN\s*M\s*/\s*K|\(N\s*-\s*1\)\s*/\s*K",
        None,
    ),
    ("$R$; $r$", "D as a number of devices", r"\bB\s*/\s*D\b|\\mathcal\s*\{?B\}?_\{?D\b|g_D\b", None),
]
# m has one meaning, SUMO's, so it appears in no other chapter's math
_BARE_M = re.compile(r"(?<![\\A-Za-z])m(?![A-Za-z])")


def _markdown_math(source: str) -> list[str]:
    """The math spans ($...$ and $$...$$) of one markdown cell, code and text commands removed."""
    # code fences go; directive fences ({note}, {dropdown}, {list-table}) hold prose and stay
    source = re.sub(r"```(?!\{)[^\n]*\n.*?```", " ", source, flags=re.S)
    source = re.sub(r"`[^`\n]*`", " ", source)
    spans = re.findall(r"\$\$(.+?)\$\$", source, flags=re.S)
    source = re.sub(r"\$\$(.+?)\$\$", " ", source, flags=re.S)
    spans += re.findall(r"(?<!\\)\$(.+?)(?<!\\)\$", source, flags=re.S)
    return [_TEXT.sub(" ", span) for span in spans]


def _outputs(cell: dict) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append("".join(output["text"]))
        elif "data" in output:
            texts.append("".join(output["data"].get("text/plain", "")))
    return "\n".join(texts)


def notation_findings(stem: str, markdown: list[str], printed: list[str]) -> list[str]:
    """Every rule broken by one chapter's markdown cells and printed outputs."""
    findings = []
    for source in markdown:
        for span in _markdown_math(source):
            for _, what, math, _ in RULES:
                if math and re.search(math, span):
                    findings.append(f"{stem}: {what}: ${span.strip()[:80]}$")
            if stem not in SUMO_CHAPTERS and _BARE_M.search(span):
                findings.append(f"{stem}: m outside the SUMO chapters: ${span.strip()[:80]}$")
    for text in printed:
        for _, what, _, output in RULES:
            for line in text.splitlines():
                if output and re.search(output, line):
                    findings.append(f"{stem}: {what} (printed): {line.strip()[:80]}")
    return findings


def _chapter(path: Path) -> tuple[list[str], list[str]]:
    cells = json.loads(path.read_text())["cells"]
    markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    printed = [_outputs(c) for c in cells if c["cell_type"] == "code"]
    return markdown, printed


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_the_notation_page(path):
    markdown, printed = _chapter(path)
    assert notation_findings(path.stem, markdown, printed) == []


def _without_quotations(errata: str) -> str:
    """The errata page without its tables' second column, which quotes what a source wrote."""
    rows = re.split(r"\n(?=\* - )", errata)
    kept = []
    for row in rows:
        items = re.split(r"\n  - ", row)
        kept.append("\n".join(items[:1] + items[2:]) if row.startswith("* - ") else row)
    return "\n".join(kept)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_page_follows_the_notation_page(path):
    text = path.read_text()
    if path.stem == "errata":
        text = _without_quotations(text)
    assert notation_findings(path.stem, [text], []) == []


def test_the_errata_check_drops_only_the_quoted_column():
    row = "* - 001, §2.2\n  - divides by $P(K \\ge m + j)$\n  - divide by $P(J \\ge j)$\n  - ch 6"
    assert notation_findings("errata", [_without_quotations(row)], []) == []
    wrong = row.replace("P(J", "P(K")
    assert notation_findings("errata", [_without_quotations(wrong)], []) != []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_links_the_notation_page(path):
    markdown, _ = _chapter(path)
    assert any("notation.md" in s or "{doc}`notation`" in s for s in markdown)


def test_every_reserved_symbol_has_a_row_on_the_notation_page():
    first_column = {
        line.split("|")[1].strip()
        for line in NOTATION.read_text().splitlines()
        if line.startswith("| $")
    }
    assert {symbol for symbol, *_ in RULES} <= first_column
    assert "$a^\\star$" in first_column and "$K$; $k$" in first_column
    assert "book/notation" in (ROOT / "_toc.yml").read_text()


# Negative controls: passages from the course's earlier drafts (each broke one rule), and the
# same passages as the notation page now writes them.
OLD_AND_NEW = [
    ("01_mixtures", "$m = \\max_c a_c$", "$a^\\star = \\max_c a_c$"),
    ("02_importance_sampling", "$q = \\mathcal{N}(m, \\operatorname{diag} s^2)$",
     "$q = \\mathcal{N}(\\mu, \\operatorname{diag} s^2)$"),
    ("03_elbo", "the ELBO of $(m, \\log s)$", "the ELBO of $(\\mu, \\log s)$"),
    ("06_sumo", "$$\\mathrm{IWAE}_m + \\sum_{j=1}^{K} \\frac{\\Delta_j}{P(K \\ge j)}$$",
     "$$\\mathrm{IWAE}_m + \\sum_{j=1}^{J} \\frac{\\Delta_j}{P(J \\ge j)}$$"),
    ("07_funnel", "uses $m + K$ samples", "uses $m + J$ samples"),
    ("08_density_estimation", "$P(\\mathcal K \\ge j)$", "$P(J \\ge j)$"),
    ("06_sumo", "$\\mathbb{E}[K] = H_{79} + 1/8$", "$\\mathbb{E}[J] = H_{79} + 1/8$"),
    ("04_gradient_estimators", "$q_\\phi = \\mathcal N(\\mu, \\operatorname{diag}\\sigma^2)$",
     "$q_\\phi = \\mathcal N(\\mu, \\operatorname{diag} s^2)$"),
    ("04_gradient_estimators", "$\\nabla_\\phi f(\\mu + \\sigma \\odot \\epsilon)$",
     "$\\nabla_\\phi f(\\mu + s \\odot \\epsilon)$"),
    ("03_elbo", "$\\mathcal N(\\mu_\\phi(x), \\operatorname{diag}\\sigma_\\phi(x)^2)$",
     "$\\mathcal N(\\mu_\\phi(x), \\operatorname{diag} s_\\phi(x)^2)$"),
    ("04_gradient_estimators", "$c_n = \\frac{1}{N-1} \\sum_{m \\ne n} f(z_m)$",
     "$c_k = \\frac{1}{K-1} \\sum_{l \\ne k} f(z_l)$"),
    ("01_mixtures", "$\\hat p(x) \\approx p(x)\\, N M / K$", "$\\hat p(x) \\approx p(x)\\, C M / K$"),
    ("09_scaling_out", "$B/D$ examples per device", "$B/R$ examples per device"),
]
OLD_PRINTED = [
    ("06_sumo", "E[K] = H_79 + 1/8 = 5.0780", "E[J] = H_79 + 1/8 = 5.0780"),
    ("06_sumo", "  SUMO, K clipped at 80  -4.545 ± 0.006", "  SUMO, J clipped at 80  -4.545 ± 0.006"),
    ("04_gradient_estimators", "   d/d mu_1   d/d log sigma_1", "   d/d mu_1   d/d log s_1"),
]


@pytest.mark.parametrize("stem, old, new", OLD_AND_NEW)
def test_the_rules_catch_each_old_use_and_pass_the_new_one(stem, old, new):
    assert notation_findings(stem, [old], []) != []
    assert notation_findings(stem, [new], []) == []


@pytest.mark.parametrize("stem, old, new", OLD_PRINTED)
def test_the_rules_catch_each_old_printed_label(stem, old, new):
    assert notation_findings(stem, [], [old]) != []
    assert notation_findings(stem, [], [new]) == []


def test_m_is_free_inside_the_sumo_chapters_and_in_text_and_code():
    assert notation_findings("06_sumo", ["$\\mathrm{IWAE}_{m+j}$, $m = 5$"], []) == []
    assert notation_findings("03_elbo", ["$\\mathrm{ELBO} = \\mathbb E_q[\\log w]$"], []) == []
    assert notation_findings("03_elbo", ["the `mean` and `m` of the code"], []) == []
    assert notation_findings("03_elbo", ["$\\mathcal N(m_j, 1)$"], []) != []


PACKAGE_FILES = sorted((ROOT / "lvm_tutorial").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))


def _docstrings(path: Path) -> list[str]:
    """Every docstring of a module (module, classes, functions), as the reader's help() shows it."""
    tree = ast.parse(path.read_text())
    nodes = [tree] + [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    return [doc for doc in map(ast.get_docstring, nodes) if doc]


@pytest.mark.parametrize("path", PACKAGE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_package_docstrings_follow_the_notation_page(path):
    # the package speaks of SUMO throughout, so m is SUMO's there too
    assert notation_findings("06_sumo", _docstrings(path), []) == []
