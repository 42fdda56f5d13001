"""Load every page of the built book in headless Chromium and check what a reader sees.

Usage (``make browser`` runs both):
    python tools/browser_check.py --self-test --mathjax DIR
    python tools/browser_check.py --html _build/html --screenshots _build/screenshots --mathjax DIR

``DIR`` is MathJax 3's ``es5`` folder (the npm package ``mathjax@3``). The check copies the
built HTML into a temporary folder, points the MathJax script at that local copy (the CDN is
unreachable offline, and a test must not depend on it), serves the copy on a free localhost
port, and drives Debian's ``chromium`` with Playwright (``executable_path``: the system
browser, no ``playwright install`` download). Per page it asserts:

- every local ``href``/``src`` resolves to a file of the built book (and ``#anchor`` to an id);
- every image loaded in the browser, and no local request failed;
- no error output: no traceback and no stderr in a cell output, except in cells tagged
  ``raises-exception`` (myst-nb writes a cell's tags as ``tag_<name>`` classes), and every
  such cell does show its error;
- math typeset: each ``.math`` element holds an ``mjx-container``, MathJax reports no error and
  no undefined macro, and the rendered text outside code has no raw ``$...$``, ``\\(``, ``\\[``;
- code fits the column: no cell's input ``pre`` is wider than its box (``scrollWidth >
  clientWidth``, a horizontal scroll bar for the reader); the first line too wide is named;
- a notebook page's Colab button opens ``<colab-prefix>book/<name>.ipynb`` and that notebook
  exists in the repository;
- every interactive cell (its code calls ``interact``, ``interactive`` or ``explorer``, or its
  output is a widget view, dead without a kernel) shows a kernel-free player
  (``lvm_tutorial.plotting.explorer``: matplotlib's ``to_jshtml``), and each player works:
  setting its range input to the last frame changes the displayed image, and its "Previous
  frame" button changes it again (compared as screenshots of the image). Pages named in
  ``PENDING_PLAYERS`` may lack a player (a note, not a failure) until their owners adopt the
  helper; a listed page that has all its players fails, so that the list is emptied;

and saves a full-page screenshot ``<screenshots>/<page path with / as _>.png`` in a
1280 px wide window (before the players are moved). ``--self-test`` builds a small site with one defect per page and asserts
each one is caught (and that the clean pages pass), so a check that silently stopped working
fails too. Each page's line says how many characters of code fit its column (``-v``: in
how many px of which font), the measure behind ruff's line length in pyproject.toml.
"""

from __future__ import annotations

import argparse
import base64
import functools
import html.parser
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

COLAB_PREFIX = "https://colab.research.google.com/github/lvm-tutorial/lvm-tutorial/blob/main/"
MATHJAX_CDN = re.compile(
    r"""(src=["'])https?://[^"']*/mathjax@?[^"'/]*/es5/([^"']+)(["'])"""
)
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 900}
RAW_MATH = re.compile(
    r"\$\$|\$[^$\s][^$]*?\$|\\\(|\\\)|\\\[|\\\]|\\begin\{"
)
# Pages whose interactive cell has no kernel-free player yet (each chapter's owner adopts
# plotting.explorer, then removes its page here; an entry for a page with players fails).
PENDING_PLAYERS: dict[str, str] = {}
INTERACTIVE_CODE = r"\b(?:interact|interactive|explorer)\s*\("
PLAYER = "div.animation:has(input.anim-slider)"
SKIPPED_DIRS = {
    "_static",
    "_sources",
    "_images",
    "_sphinx_design_static",
    "_panels_static",
}


def find_chromium() -> str:
    for name in (
        os.environ.get("CHROMIUM", ""),
        "chromium",
        "chromium-browser",
    ):
        if name and (path := shutil.which(name)):
            return path
    sys.exit(
        "browser check: no chromium found (make browser-deps installs Debian's chromium)"
    )


# --------------------------------------------------------------------------- serving
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def prepare_site(html_dir: Path, mathjax_dir: Path, site: Path) -> None:
    """Copy the built book to `site`, with MathJax served from `site/_mathjax/`."""
    shutil.copytree(html_dir, site)
    shutil.copytree(mathjax_dir, site / "_mathjax")
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new = MATHJAX_CDN.sub(r"\1/_mathjax/\2\3", text)
        if new != text:
            page.write_text(new, encoding="utf-8")


# --------------------------------------------------------------------------- static checks
class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        # (tag, attribute, value) of every href and src
        self.refs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.refresh: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("id", "name"):
            if attrs.get(name) and (name == "id" or tag == "a"):
                self.ids.add(attrs[name])
        for name in ("href", "src"):
            if attrs.get(name) is not None:
                self.refs.append((tag, name, attrs[name]))
        if (
            tag == "meta"
            and (attrs.get("http-equiv") or "").lower() == "refresh"
        ):
            self.refresh = (
                (attrs.get("content") or "").partition("url=")[2].strip()
            )


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def _resolve(root: Path, page: Path, ref: str) -> tuple[Path | None, str]:
    """The file a local reference points to (None if it is external) and its fragment."""
    parts = urllib.parse.urlsplit(ref)
    external = ref.startswith(("mailto:", "javascript:", "data:"))
    if parts.scheme or parts.netloc or external:
        return None, ""
    if not parts.path:
        return page, parts.fragment
    path = urllib.parse.unquote(parts.path)
    target = (
        root / path.lstrip("/")
        if path.startswith("/")
        else page.parent / path
    )
    target = Path(os.path.normpath(target))
    if target.is_dir():
        target = target / "index.html"
    return target, parts.fragment


def static_problems(
    root: Path, page: Path, repo: Path, colab_prefix: str
) -> list[str]:
    """Broken local links and the Colab button, from the HTML file itself."""
    links = _parse(page)
    problems = []
    for tag, attr, ref in links.refs:
        target, fragment = _resolve(root, page, ref)
        if target is None:
            continue
        where = f"<{tag} {attr}={ref!r}>"
        if (
            not target.is_file()
            or root.resolve() not in target.resolve().parents
        ):
            problems.append(
                f"broken link: {where} has no file in the book"
            )
        elif (
            fragment
            and target.suffix == ".html"
            and fragment not in _parse(target).ids
        ):
            problems.append(
                f"broken link: {where} has no #{fragment} anchor"
            )
    name = page.relative_to(root).with_suffix("")
    colab = sorted(
        {
            ref
            for _, _, ref in links.refs
            if "colab.research.google.com" in ref
        }
    )
    if (root / "_sources" / name).with_suffix(".ipynb").is_file():
        expected = f"{colab_prefix}{name.as_posix()}.ipynb"
        if colab != [expected]:
            problems.append(
                f"colab link: expected {expected}, found {colab or 'none'}"
            )
        if not (repo / name).with_suffix(".ipynb").is_file():
            problems.append(
                f"colab link: {name}.ipynb is not a notebook of the repository"
            )
    elif colab:
        problems.append(
            f"colab link: a page that is not a notebook links to {colab}"
        )
    return problems


# --------------------------------------------------------------------------- in the browser
# Run in the page once it has loaded; resolves to what the checks below need.
PAGE_SCRIPT = r"""
async ([interactiveCode, player]) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const maths = [...document.querySelectorAll('.math')];
  let mathjax = 'not needed';
  if (maths.length) {
    // The MathJax script is deferred, so it has run by the load event; wait a little anyway.
    const ready = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
    for (let i = 0; i < 40 && !ready(); i++) await sleep(50);
    if (ready()) {
      await MathJax.startup.promise;
      mathjax = 'typeset';
    } else mathjax = 'never loaded';
  }
  await Promise.all([...document.images].map(img => img.complete ? null :
    new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  const skip = 'script, style, pre, code, textarea, noscript, template, mjx-container, '
    + '.highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement && n.parentElement.closest(skip)
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode.nodeValue);
  const short = s => (s || '').replace(/\s+/g, ' ').trim().slice(0, 100);
  // A code block wider than its box: the first line whose rendered width exceeds the box's
  // content width (measured in the block's own font), its number and text.
  const canvas = document.createElement('canvas').getContext('2d');
  const overflow = pre => {
    if (pre.scrollWidth <= pre.clientWidth) return null;
    const style = getComputedStyle(pre);
    canvas.font = style.font;
    const room = pre.clientWidth - parseFloat(style.paddingLeft)
      - parseFloat(style.paddingRight);
    const lines = pre.textContent.split('\n');
    let at = lines.findIndex(l => canvas.measureText(l).width > room + 0.5);
    if (at < 0)  // a width the canvas does not see (e.g. a wide glyph): name the longest line
      at = lines.reduce((best, l, i) => l.length > lines[best].length ? i : best, 0);
    return {line: at + 1, text: lines[at].slice(0, 120), chars: lines[at].length,
            scroll: pre.scrollWidth, client: pre.clientWidth};
  };
  const cells = [...document.querySelectorAll('div.cell')].map((cell, i) => {
    const out = [...cell.querySelectorAll('.cell_output')];
    const outText = out.map(o => o.textContent).join('\n');
    const input = cell.querySelector('.cell_input pre') || cell.querySelector('.cell_input');
    const widgetView = 'script[type="application/vnd.jupyter.widget-view+json"]';
    return {
      index: i + 1,
      raises: cell.classList.contains('tag_raises-exception'),
      traceback: out.some(o => o.querySelector('.traceback, .output.error')) ||
                 /Traceback \(most recent call last\)/.test(outText),
      stderr: out.flatMap(o => [...o.querySelectorAll('.stderr')]).map(e => short(e.textContent)),
      code: short(input ? input.textContent : ''),
      overflow: [...cell.querySelectorAll('.cell_input pre')].map(overflow).find(o => o) || null,
      interactive: new RegExp(interactiveCode).test(input ? input.textContent : '') ||
                   out.some(o => o.querySelector(widgetView)),
      players: out.flatMap(o => [...o.querySelectorAll(player)]).length,
    };
  });
  // Characters of code that fit a cell input's column (for choosing a line length).
  const sample = document.querySelector('.cell_input pre');
  let column = null;
  if (sample) {
    const style = getComputedStyle(sample);
    canvas.font = style.font;
    const room = sample.clientWidth - parseFloat(style.paddingLeft)
      - parseFloat(style.paddingRight);
    column = {px: room, chars: Math.floor(room / canvas.measureText('0'.repeat(100)).width * 100),
              font: style.font};
  }
  const loose = [...document.querySelectorAll('.traceback, .output.error')]
    .filter(e => !e.closest('div.cell')).map(e => short(e.textContent));
  return {
    mathjax,
    maths: maths.length,
    containers: document.querySelectorAll('mjx-container').length,
    untypeset: maths.filter(e => !e.querySelector('mjx-container')).map(e => short(e.textContent)),
    merrors: [...document.querySelectorAll('mjx-merror')].map(e =>
      short(e.getAttribute('data-mjx-error') || e.textContent)),
    undefined: [...document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]')]
      .map(e => short(e.textContent)),
    images: document.images.length,
    broken_images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0)
      .map(i => i.getAttribute('src')),
    text: texts.join(' '),
    cells,
    players: document.querySelectorAll(player).length,
    column,
    loose,
  };
}
"""


class Requests:
    """What the page asked the server for and did not get (Playwright's page events)."""

    def __init__(self, page: Page, base: str):
        self.base = base
        self.problems: list[str] = []
        self.notes: list[str] = []
        page.on("response", self._response)
        page.on("requestfailed", self._failed)
        page.on(
            "pageerror",
            lambda error: self.notes.append(f"javascript: {error}"[:200]),
        )

    def clear(self) -> None:
        self.problems, self.notes = [], []

    def _local(self, url: str) -> str | None:
        return (
            url[len(self.base) - 1 :]
            if url.startswith(self.base)
            else None
        )

    def _response(self, response) -> None:
        path = self._local(response.url)
        # The browser asks for /favicon.ico by itself; the book does not link one.
        if response.status >= 400 and path not in (None, "/favicon.ico"):
            self.problems.append(
                f"broken link: the browser got {response.status} for {path}"
            )

    def _failed(self, request) -> None:
        error, path = request.failure, self._local(request.url)
        if path is None:
            self.notes.append(
                f"external request failed (offline is expected): {request.url}"
            )
        elif error != "net::ERR_ABORTED":
            self.problems.append(
                f"broken link: loading {path} failed ({error})"
            )


def page_problems(info: dict, pending: str | None = None) -> list[str]:
    """The problems in what PAGE_SCRIPT found on one page (``pending``: why the page may lack
    its players, from PENDING_PLAYERS)."""
    problems = [
        f"broken image: {src} did not load"
        for src in info["broken_images"]
    ]
    for cell in info["cells"]:
        where = f"cell {cell['index']} ({cell['code']!r})"
        if cell["traceback"] and not cell["raises"]:
            problems.append(
                f"error output: a traceback in {where}, not tagged raises-exception"
            )
        if cell["raises"] and not cell["traceback"]:
            problems.append(
                f"error output: {where} is tagged raises-exception but shows no error"
            )
        for text in cell["stderr"]:
            if not cell["raises"]:
                problems.append(
                    f"error output: stderr in {where}: {text!r}"
                )
        if cell["interactive"] and not cell["players"] and not pending:
            problems.append(
                f"no player: {where} is interactive but shows no kernel-free player "
                "(plotting.explorer); its widget is dead without a kernel"
            )
        if wide := cell["overflow"]:
            problems.append(
                f"code overflow: cell {cell['index']}, line {wide['line']} "
                f"({wide['chars']} characters) is wider than the column "
                f"({wide['scroll']} px of code in {wide['client']} px): {wide['text']!r}"
            )
    interactive = [c for c in info["cells"] if c["interactive"]]
    if pending and interactive and all(c["players"] for c in interactive):
        problems.append(
            "stale exception: every interactive cell has its player; "
            "remove the page from PENDING_PLAYERS"
        )
    for text in info["loose"]:
        problems.append(
            f"error output: a traceback outside any cell: {text!r}"
        )
    if info["maths"] and info["mathjax"] != "typeset":
        problems.append(
            f"math not typeset: MathJax {info['mathjax']} on a page with "
            f"{info['maths']} formulas"
        )
    for text in info["untypeset"]:
        problems.append(f"math not typeset: {text!r}")
    for text in info["merrors"]:
        problems.append(f"math error: MathJax could not typeset {text!r}")
    for text in info["undefined"]:
        problems.append(f"math error: undefined macro {text!r}")
    for match in RAW_MATH.finditer(info["text"]):
        start, end = max(0, match.start() - 40), match.end() + 40
        context = info["text"][start:end].replace("\n", " ")
        problems.append(
            f"raw math: {match.group()!r} left in the rendered text: ...{context}..."
        )
    return problems


def player_problems(page: Page, count: int) -> list[str]:
    """Move each of the page's ``count`` players as a reader would; a problem for each whose
    displayed image does not change (screenshots of the image before and after)."""
    problems = []
    for index in range(count):
        player = page.locator(PLAYER).nth(index)
        image, slider = (
            player.locator("img"),
            player.locator("input.anim-slider"),
        )
        where = f"player {index + 1} of {count}"
        try:
            last = int(slider.get_attribute("max") or 0)
            if last < 1:
                problems.append(f"player: {where} has {last + 1} frame(s)")
                continue
            first = image.screenshot()
            slider.fill(str(last))
            moved = image.screenshot()
            player.locator('button[title="Previous frame"]').click()
            stepped = image.screenshot()
        except PlaywrightError as error:
            problems.append(
                f"player: {where}: {str(error).splitlines()[0]}"
            )
            continue
        if moved == first:
            problems.append(
                f"player: {where}: setting its slider to the last frame ({last}) "
                "left the image unchanged"
            )
        if stepped == moved:
            problems.append(
                f"player: {where}: its Previous frame button left the image unchanged"
            )
    return problems


def browser_problems(
    page: Page,
    requests: Requests,
    url: str,
    screenshot: Path | None,
    pending: str | None = None,
) -> tuple[list[str], dict]:
    requests.clear()
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        info = page.evaluate(PAGE_SCRIPT, [INTERACTIVE_CODE, PLAYER])
    except PlaywrightError as error:
        return [f"load: {url}: {str(error).splitlines()[0]}"], {}
    problems = requests.problems + page_problems(info, pending)
    if screenshot is not None:
        page.screenshot(path=screenshot, full_page=True, timeout=120_000)
    problems += player_problems(page, info["players"])
    info["notes"] = requests.notes
    info["exceptions"] = [
        f"known exception: cell {c['index']} is interactive without a player, "
        f"until {pending} (PENDING_PLAYERS)"
        for c in info["cells"]
        if pending and c["interactive"] and not c["players"]
    ]
    return problems, info


# --------------------------------------------------------------------------- the whole book
def book_pages(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*.html")
        if not SKIPPED_DIRS.intersection(p.relative_to(root).parts[:-1])
    )


def check_book(
    html_dir: Path,
    mathjax_dir: Path,
    screenshots: Path | None,
    repo: Path,
    colab_prefix: str = COLAB_PREFIX,
    verbose: bool = False,
    quiet: bool = False,
    pending_players: dict[str, str] = PENDING_PLAYERS,
) -> dict[str, list[str]]:
    """Problems found on each page of the book at `html_dir` (an empty list: it passed)."""
    if not (mathjax_dir / "tex-mml-chtml.js").is_file():
        sys.exit(
            f"browser check: no MathJax at {mathjax_dir} (make browser-deps installs it)"
        )
    if screenshots is not None:
        shutil.rmtree(screenshots, ignore_errors=True)
        screenshots.mkdir(parents=True)
    _parse.cache_clear()
    report: dict[str, list[str]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="browser-check-") as tmp,
        sync_playwright() as playwright,
    ):
        site = Path(tmp) / "site"
        prepare_site(html_dir, mathjax_dir, site)
        browser = playwright.chromium.launch(
            executable_path=find_chromium(), args=CHROMIUM_ARGS
        )
        server, base = serve(site)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            requests = Requests(page, base)
            for path in book_pages(site):
                name = path.relative_to(site).as_posix()
                problems = static_problems(site, path, repo, colab_prefix)
                # A redirect: its target is checked as a page of its own.
                if _parse(path).refresh is not None:
                    report[name] = problems
                    continue
                shot = None
                if screenshots is not None:
                    shot = screenshots / (
                        name[:-5].replace("/", "_") + ".png"
                    )
                start = time.perf_counter()
                found, info = browser_problems(
                    page,
                    requests,
                    base + name,
                    shot,
                    pending_players.get(name),
                )
                report[name] = problems + found
                if not quiet:
                    print_page(
                        name,
                        report[name],
                        info,
                        time.perf_counter() - start,
                        verbose,
                    )
        finally:
            server.shutdown()
            browser.close()
    return report


def print_page(
    name: str,
    problems: list[str],
    info: dict,
    seconds: float,
    verbose: bool,
):
    status = "ok" if not problems else f"{len(problems)} problem(s)"
    column = info.get("column")
    fits = f", {column['chars']} characters a code line" if column else ""
    players = (
        f", {info['players']} player(s) moved"
        if info.get("players")
        else ""
    )
    print(
        f"  {name}: {status} ({info.get('containers', 0)} formulas typeset, "
        f"{info.get('images', 0)} images, {len(info.get('cells', []))} cells{fits}"
        f"{players}, {seconds:.1f} s)",
        flush=True,
    )
    for problem in problems:
        print(f"    FAIL {name}: {problem}", flush=True)
    for exception in info.get("exceptions", []):
        print(f"    note {name}: {exception}", flush=True)
    if verbose:
        for note in info.get("notes", []):
            print(f"    note {note}", flush=True)
        if column:
            print(
                f"    note code column {column['px']:.0f} px in {column['font']}"
            )


# --------------------------------------------------------------------------- self-test
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
    "RU5ErkJggg=="
)
_HEAD = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body {{max-width: 800px}} pre {{overflow: auto}}</style>
<script>window.MathJax = {{"options": {{"processHtmlClass":
 "tex2jax_process|mathjax_process|math|output_area"}},
 "tex": {{"macros": {{"E": "\\\\mathbb{{E}}"}}}}}}</script>
<script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">
</script></head><body class="document"><h1 id="top">{title}</h1>{body}</body></html>"""
_CELL = (
    '<div class="cell {tags} docutils container"><div class="cell_input docutils '
    'container"><pre>{code}</pre></div><div class="cell_output docutils container">'
    "{output}</div></div>"
)
_TRACEBACK = (
    '<div class="output traceback highlight-ipythontb notranslate"><pre>Traceback '
    "(most recent call last)\nZeroDivisionError: division by zero</pre></div>"
)
_STDERR = '<div class="output stderr highlight-myst-ansi notranslate"><pre>oops</pre></div>'
_COLAB = '<a href="https://colab.research.google.com/github/o/r/blob/main/{path}">Colab</a>'
_WIDE = (
    "x = 1\ntotal = "
    + " + ".join(f"x{i}" for i in range(60))
    + "\nprint(total)"
)

_DEAD_WIDGET = (
    '<script type="application/vnd.jupyter.widget-view+json">'
    '{"version_major": 2, "version_minor": 0, "model_id": "0"}</script>'
)
# Stand-ins replaced by players that self_test makes with matplotlib's to_jshtml.
_PLAYER, _FROZEN_PLAYER = "<!-- player -->", "<!-- frozen player -->"
_EXPLORER_CODE = "plotting.explorer(draw, x=widgets.IntSlider())"


def _jshtml_player(frozen: bool) -> str:
    """A three-frame player like plotting.explorer's; ``frozen``: every frame alike."""
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.5, 1.0), dpi=50)
    ax = fig.add_subplot()

    def draw(frame):
        ax.clear()
        ax.plot([0, 1], [0, 0 if frozen else frame])

    animation = FuncAnimation(fig, draw, frames=3, init_func=lambda: None)
    return animation.to_jshtml(default_mode="once")


# page name -> (body, the problem the check must report; None for the clean page)
_SELF_TEST_PAGES = {
    "good": (
        '<p>Inline <span class="math notranslate nohighlight">\\(\\E[x^2]\\)</span>, '
        'costs 5 dollars.</p><div class="math notranslate nohighlight">\\[\\log p(x)\\]'
        '</div><img src="../_images/dot.png"><a href="raw.html#top">next</a>'
        + _COLAB.format(path="book/good.ipynb")
        + _CELL.format(
            tags="tag_raises-exception", code="1/0", output=_TRACEBACK
        )
        + _CELL.format(
            tags="",
            code="print($1)",
            output="<pre>$x$ in code is fine</pre>",
        )
        + _CELL.format(tags="", code=_EXPLORER_CODE, output=_PLAYER),
        None,
    ),
    "raw": ("<p>Here $x^2$ was never converted.</p>", "raw math"),
    "raw_paren": ("<p>Here \\(x was never closed.</p>", "raw math"),
    "no_mathjax": (
        '<p><span class="math notranslate nohighlight">\\(x\\)</span></p>'
        "<!-- no MathJax script -->",
        "math not typeset",
    ),
    "macro": (
        '<p><span class="math notranslate nohighlight">\\(\\nosuchmacro x\\)</span></p>',
        "math error",
    ),
    "image": ('<img src="../_images/missing.png">', "broken image"),
    "link": ('<a href="nowhere.html">gone</a>', "broken link"),
    "anchor": (
        '<a href="good.html#no-such-section">gone</a>',
        "broken link",
    ),
    "traceback": (
        _CELL.format(tags="", code="1/0", output=_TRACEBACK),
        "error output",
    ),
    "stderr": (
        _CELL.format(tags="", code="warn()", output=_STDERR),
        "error output",
    ),
    "no_error": (
        _CELL.format(
            tags="tag_raises-exception", code="1", output="<pre>1</pre>"
        ),
        "error output",
    ),
    "wide_code": (
        _CELL.format(tags="", code=_WIDE, output=""),
        "code overflow: cell 1, line 2 ",
    ),
    # A hide-input cell: its code sits in a closed <details>, measured all the same.
    "wide_hidden_code": (
        _CELL.format(tags="tag_hide-input", code=_WIDE, output="")
        .replace(
            '<div class="cell_input',
            '<details><summary>Show</summary><div class="cell_input',
        )
        .replace("</pre></div>", "</pre></div></details>", 1),
        "code overflow: cell 1, line 2 ",
    ),
    # An interact cell whose widget view is dead in the static page, and one with no output.
    "no_player": (
        _CELL.format(
            tags="",
            code="widgets.interact(show, x=(0, 5));",
            output=_DEAD_WIDGET,
        ),
        "no player: cell 1",
    ),
    "no_player_output": (
        _CELL.format(tags="", code=_EXPLORER_CODE, output=""),
        "no player: cell 1",
    ),
    "frozen_player": (
        _CELL.format(tags="", code=_EXPLORER_CODE, output=_FROZEN_PLAYER),
        "player: player 1 of 1: setting its slider",
    ),
    # Named in the self-test's PENDING_PLAYERS: a dead widget passes, a page with its
    # players fails until it leaves the list.
    "pending": (
        _CELL.format(
            tags="",
            code="widgets.interact(show, x=(0, 5));",
            output=_DEAD_WIDGET,
        ),
        None,
    ),
    "stale_pending": (
        _CELL.format(tags="", code=_EXPLORER_CODE, output=_PLAYER),
        "stale exception",
    ),
    "colab": (_COLAB.format(path="book/other.ipynb"), "colab link"),
    "no_colab": (
        "<p>A notebook page without a launch button.</p>",
        "colab link",
    ),
}
_NOTEBOOK_PAGES = {"good", "colab", "no_colab"}


def self_test(mathjax_dir: Path) -> bool:
    """A site with one defect per page: True when each is caught and the clean page passes."""
    with tempfile.TemporaryDirectory(prefix="browser-self-test-") as tmp:
        root = Path(tmp) / "html"
        repo = Path(tmp) / "repo"
        for folder in ("book", "_images", "_sources/book"):
            (root / folder).mkdir(parents=True)
        (repo / "book").mkdir(parents=True)
        (root / "_images" / "dot.png").write_bytes(_PNG)
        players = {
            _PLAYER: _jshtml_player(frozen=False),
            _FROZEN_PLAYER: _jshtml_player(frozen=True),
        }
        for name, (body, _) in _SELF_TEST_PAGES.items():
            for stand_in, player in players.items():
                body = body.replace(stand_in, player)
            page = _HEAD.format(title=name, body=body)
            if "<!-- no MathJax script -->" in body:
                page = MATHJAX_CDN.sub(r"\1nowhere/mathjax.js\3", page)
            (root / "book" / f"{name}.html").write_text(
                page, encoding="utf-8"
            )
            if name in _NOTEBOOK_PAGES:
                (root / "_sources" / "book" / f"{name}.ipynb").write_text(
                    "{}"
                )
                (repo / "book" / f"{name}.ipynb").write_text("{}")
        report = check_book(
            root,
            mathjax_dir,
            None,
            repo,
            quiet=True,
            colab_prefix="https://colab.research.google.com/github/o/r/blob/main/",
            pending_players={
                "book/pending.html": "a test",
                "book/stale_pending.html": "a test",
            },
        )
    ok = True
    for name, (_, expected) in _SELF_TEST_PAGES.items():
        problems = report.get(f"book/{name}.html")
        if problems is None:
            caught = False
        elif expected is None:
            caught = not problems
        else:
            caught = any(p.startswith(expected) for p in problems)
        ok &= caught
        if not caught:
            print(
                f"self-test {name}: MISSED (expected {expected or 'no problem'}; "
                f"found {problems})",
                flush=True,
            )
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument(
        "--screenshots", type=Path, default=Path("_build/screenshots")
    )
    parser.add_argument(
        "--mathjax",
        type=Path,
        required=True,
        help="MathJax 3's es5 folder",
    )
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="repository root"
    )
    parser.add_argument("--colab-prefix", default=COLAB_PREFIX)
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        ok = self_test(args.mathjax)
        result = (
            "caught, clean pages passed"
            if ok
            else "NOT all caught: FAILED"
        )
        planted = sum(p is not None for _, p in _SELF_TEST_PAGES.values())
        print(
            f"browser check self-test: {planted} planted defects {result}"
        )
        return 0 if ok else 1
    if not (args.html / "index.html").is_file():
        print(
            f"browser check: no built book at {args.html} (run make book)"
        )
        return 1
    start = time.perf_counter()
    report = check_book(
        args.html,
        args.mathjax,
        args.screenshots,
        args.repo,
        args.colab_prefix,
        args.verbose,
    )
    failed = sorted(name for name, problems in report.items() if problems)
    print(
        f"browser check: {len(report) - len(failed)} pages passed, {len(failed)} failed "
        f"in {time.perf_counter() - start:.0f} s; screenshots in {args.screenshots}/"
    )
    for name in failed:
        print(f"  failed: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
