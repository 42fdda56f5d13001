"""Load every page of the built book in headless Chromium and check what a reader sees.

Usage (``make browser`` runs both):
    python tools/browser_check.py --self-test --mathjax DIR
    python tools/browser_check.py --html _build/html --screenshots _build/screenshots --mathjax DIR

``DIR`` is MathJax 3's ``es5`` folder (the npm package ``mathjax@3``). The check copies the
built HTML into a temporary folder, points the MathJax script at that local copy (the CDN is
unreachable offline, and a test must not depend on it), serves the copy on a free localhost
port, and drives Debian's ``chromium`` through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: no extra package, no browser download). Per page it asserts:

- every local ``href``/``src`` resolves to a file of the built book (and ``#anchor`` to an id);
- every image loaded in the browser, and no local request failed;
- no error output: no traceback and no stderr in a cell output, except in cells tagged
  ``raises-exception`` (myst-nb writes a cell's tags as ``tag_<name>`` classes), and every
  such cell does show its error;
- math typeset: each ``.math`` element holds an ``mjx-container``, MathJax reports no error and
  no undefined macro, and the rendered text outside code has no raw ``$...$``, ``\\(``, ``\\[``;
- a notebook page's Colab button opens ``<colab-prefix>book/<name>.ipynb`` and that notebook
  exists in the repository;

and saves a full-page screenshot ``<screenshots>/<page path with / as _>.png``.
``--self-test`` builds a small site with one defect per page and asserts each one is caught
(and that a clean page passes), so a check that silently stopped working fails too.
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

COLAB_PREFIX = "https://colab.research.google.com/github/lvm-tutorial/lvm-tutorial/blob/main/"
MATHJAX_CDN = re.compile(r"""(src=["'])https?://[^"']*/mathjax@?[^"'/]*/es5/([^"']+)(["'])""")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    "--window-size=1280,900", "--remote-debugging-pipe",
]
WIDTH = 1280
MAX_SHOT_HEIGHT = 8000  # px per screenshot; a taller page is continued in <page>-2.png, ...
RAW_MATH = re.compile(r"\$\$|\$[^$\s][^$]*?\$|\\\(|\\\)|\\\[|\\\]|\\begin\{")
SKIPPED_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}


# --------------------------------------------------------------------------- Chromium
class Chromium:
    """Headless Chromium driven by the DevTools protocol over a pipe (fd 3 in, fd 4 out)."""

    def __init__(self, executable: str, profile: str):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Move the child's ends to fds >= 10 so that bash can map them onto 3 and 4 without
        # clobbering one another (dash only redirects fds 0-9).
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)
        script = f'exec "$0" "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", script, executable, *CHROMIUM_FLAGS,
             f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(child_r)
        os.close(child_w)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = os.fdopen(from_chrome_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._closed = False
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        buffer = b""
        while chunk := self._in.read(1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            self._out.write(json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"Chromium exited before {method}\n{self._stderr_tail()}") from None
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise RuntimeError(f"Chromium did not answer {method} in {timeout} s\n"
                                       f"{self._stderr_tail()}")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _stderr_tail(self) -> str:
        return b"".join(self._stderr)[-2000:].decode(errors="replace")

    def wait_event(self, method: str, session: str, since: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(e["method"] == method and e.get("sessionId") == session
                       for e in self.events[since:]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def new_page(self) -> str:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=session)
        return session

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    sys.exit("browser check: no chromium found (make browser-deps installs Debian's chromium)")


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
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
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
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            self.refresh = (attrs.get("content") or "").partition("url=")[2].strip()


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def _resolve(root: Path, page: Path, ref: str) -> tuple[Path | None, str]:
    """The file a local reference points to (None if it is external) and its fragment."""
    parts = urllib.parse.urlsplit(ref)
    if parts.scheme or parts.netloc or ref.startswith(("mailto:", "javascript:", "data:")):
        return None, ""
    if not parts.path:
        return page, parts.fragment
    path = urllib.parse.unquote(parts.path)
    target = root / path.lstrip("/") if path.startswith("/") else page.parent / path
    target = Path(os.path.normpath(target))
    if target.is_dir():
        target = target / "index.html"
    return target, parts.fragment


def static_problems(root: Path, page: Path, repo: Path, colab_prefix: str) -> list[str]:
    """Broken local links and the Colab button, from the HTML file itself."""
    links = _parse(page)
    problems = []
    for tag, attr, ref in links.refs:
        target, fragment = _resolve(root, page, ref)
        if target is None:
            continue
        if not target.is_file() or root.resolve() not in target.resolve().parents:
            problems.append(f"broken link: <{tag} {attr}={ref!r}> has no file in the book")
        elif fragment and target.suffix == ".html" and fragment not in _parse(target).ids:
            problems.append(f"broken link: <{tag} {attr}={ref!r}> has no #{fragment} anchor")
    name = page.relative_to(root).with_suffix("")
    colab = sorted({ref for _, _, ref in links.refs if "colab.research.google.com" in ref})
    if (root / "_sources" / name).with_suffix(".ipynb").is_file():
        expected = f"{colab_prefix}{name.as_posix()}.ipynb"
        if colab != [expected]:
            problems.append(f"colab link: expected {expected}, found {colab or 'none'}")
        if not (repo / name).with_suffix(".ipynb").is_file():
            problems.append(f"colab link: {name}.ipynb is not a notebook of the repository")
    elif colab:
        problems.append(f"colab link: a page that is not a notebook links to {colab}")
    return problems


# --------------------------------------------------------------------------- in the browser
PAGE_SCRIPT = r"""
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const maths = [...document.querySelectorAll('.math')];
  let mathjax = 'not needed';
  if (maths.length) {
    // The MathJax script is deferred, so it has run by the load event; wait a little anyway.
    for (let i = 0; i < 40 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
      await sleep(50);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
      mathjax = 'typeset';
    } else mathjax = 'never loaded';
  }
  await Promise.all([...document.images].map(img => img.complete ? null :
    new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  const skip = 'script, style, pre, code, textarea, noscript, template, mjx-container, .highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.parentElement && n.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode.nodeValue);
  const short = s => (s || '').replace(/\s+/g, ' ').trim().slice(0, 100);
  const cells = [...document.querySelectorAll('div.cell')].map((cell, i) => {
    const out = [...cell.querySelectorAll('.cell_output')];
    const outText = out.map(o => o.textContent).join('\n');
    const input = cell.querySelector('.cell_input pre') || cell.querySelector('.cell_input');
    return {
      index: i + 1,
      raises: cell.classList.contains('tag_raises-exception'),
      traceback: out.some(o => o.querySelector('.traceback, .output.error')) ||
                 /Traceback \(most recent call last\)/.test(outText),
      stderr: out.flatMap(o => [...o.querySelectorAll('.stderr')]).map(e => short(e.textContent)),
      code: short(input ? input.textContent : ''),
    };
  });
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
    loose,
    height: Math.max(document.documentElement.scrollHeight, document.body.scrollHeight),
  };
})()
"""


def browser_problems(chrome: Chromium, session: str, url: str, base: str,
                     screenshot: Path | None) -> tuple[list[str], dict]:
    since = len(chrome.events)
    chrome.call("Page.navigate", {"url": url}, session=session)
    if not chrome.wait_event("Page.loadEventFired", session, since, timeout=60):
        return [f"load: {url} did not finish loading in 60 s"], {}
    result = chrome.call("Runtime.evaluate", {"expression": PAGE_SCRIPT, "awaitPromise": True,
                                              "returnByValue": True}, session=session)
    if "exceptionDetails" in result:
        return [f"check script failed: {result['exceptionDetails']}"], {}
    page = result["result"]["value"]
    problems = []
    # Requests: a local one that failed is a broken resource; external ones are only noted.
    urls, notes = {}, []
    for event in chrome.events[since:]:
        if event.get("sessionId") != session:
            continue
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            bad = params["response"]["url"]
            if bad.startswith(base) and bad != base + "favicon.ico":  # asked for by the browser
                problems.append(f"broken link: the browser got {params['response']['status']} "
                                f"for {bad[len(base) - 1:]}")
        elif method == "Network.loadingFailed":
            bad = urls.get(params["requestId"], "?")
            if bad.startswith(base) and params.get("errorText") != "net::ERR_ABORTED":
                problems.append(f"broken link: loading {bad[len(base) - 1:]} failed "
                                f"({params.get('errorText')})")
            elif not bad.startswith(base):
                notes.append(f"external request failed (offline is expected): {bad}")
        elif method == "Runtime.exceptionThrown":
            notes.append("javascript: " + params["exceptionDetails"].get("exception", {})
                         .get("description", params["exceptionDetails"].get("text", ""))[:200])
    for src in page["broken_images"]:
        problems.append(f"broken image: {src} did not load")
    for cell in page["cells"]:
        where = f"cell {cell['index']} ({cell['code']!r})"
        if cell["traceback"] and not cell["raises"]:
            problems.append(f"error output: a traceback in {where}, not tagged raises-exception")
        if cell["raises"] and not cell["traceback"]:
            problems.append(f"error output: {where} is tagged raises-exception but shows no error")
        for text in cell["stderr"]:
            if not cell["raises"]:
                problems.append(f"error output: stderr in {where}: {text!r}")
    for text in page["loose"]:
        problems.append(f"error output: a traceback outside any cell: {text!r}")
    if page["maths"] and page["mathjax"] != "typeset":
        problems.append(f"math not typeset: MathJax {page['mathjax']} on a page with "
                        f"{page['maths']} formulas")
    for text in page["untypeset"]:
        problems.append(f"math not typeset: {text!r}")
    for text in page["merrors"]:
        problems.append(f"math error: MathJax could not typeset {text!r}")
    for text in page["undefined"]:
        problems.append(f"math error: undefined macro {text!r}")
    for match in RAW_MATH.finditer(page["text"]):
        context = page["text"][max(0, match.start() - 40):match.end() + 40].replace("\n", " ")
        problems.append(f"raw math: {match.group()!r} left in the rendered text: ...{context}...")
    if screenshot is not None:
        save_screenshots(chrome, session, int(page["height"]), screenshot)
    page["notes"] = notes
    return problems, page


def save_screenshots(chrome: Chromium, session: str, height: int, path: Path) -> list[Path]:
    """The whole page as `path`, continued in `<stem>-2.png`, ... when it is very tall.

    The window is made as tall as the page (up to MAX_SHOT_HEIGHT), so each capture is the
    page as laid out for a reader; capturing beyond a short viewport can misplace content.
    """
    tile = min(max(height, 1), MAX_SHOT_HEIGHT)
    chrome.call("Emulation.setDeviceMetricsOverride", {
        "width": WIDTH, "height": tile, "deviceScaleFactor": 1, "mobile": False}, session=session)
    paths = []
    for index, top in enumerate(range(0, max(height, 1), tile)):
        chrome.call("Runtime.evaluate", {"awaitPromise": True, "expression":
                    f"window.scrollTo(0, {top}); new Promise(r => requestAnimationFrame("
                    "() => requestAnimationFrame(r)))"}, session=session)
        shot = chrome.call("Page.captureScreenshot", {"format": "png"}, session=session,
                           timeout=120)
        paths.append(path if index == 0 else path.with_name(f"{path.stem}-{index + 1}.png"))
        paths[-1].write_bytes(base64.b64decode(shot["data"]))
    chrome.call("Emulation.clearDeviceMetricsOverride", session=session)
    return paths


# --------------------------------------------------------------------------- the whole book
def book_pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html")
                  if not SKIPPED_DIRS.intersection(p.relative_to(root).parts[:-1]))


def check_book(html_dir: Path, mathjax_dir: Path, screenshots: Path | None, repo: Path,
               colab_prefix: str = COLAB_PREFIX, verbose: bool = False,
               quiet: bool = False) -> dict[str, list[str]]:
    """Problems found on each page of the book at `html_dir` (an empty list: the page passed)."""
    if not (mathjax_dir / "tex-mml-chtml.js").is_file():
        sys.exit(f"browser check: no MathJax at {mathjax_dir} (make browser-deps installs it)")
    if screenshots is not None:
        shutil.rmtree(screenshots, ignore_errors=True)
        screenshots.mkdir(parents=True)
    _parse.cache_clear()
    report: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="browser-check-") as tmp:
        site = Path(tmp) / "site"
        prepare_site(html_dir, mathjax_dir, site)
        chrome = Chromium(find_chromium(), str(Path(tmp) / "profile"))
        server, base = serve(site)
        try:
            session = chrome.new_page()
            for page in book_pages(site):
                name = page.relative_to(site).as_posix()
                problems = static_problems(site, page, repo, colab_prefix)
                if _parse(page).refresh is not None:  # a redirect: its target was checked above
                    report[name] = problems
                    continue
                shot = screenshots / (name[:-5].replace("/", "_") + ".png") if screenshots else None
                start = time.perf_counter()
                found, info = browser_problems(chrome, session, base + name, base, shot)
                problems += found
                report[name] = problems
                if quiet:
                    continue
                status = "ok" if not problems else f"{len(problems)} problem(s)"
                print(f"  {name}: {status} ({info.get('containers', 0)} formulas typeset, "
                      f"{info.get('images', 0)} images, {len(info.get('cells', []))} cells, "
                      f"{time.perf_counter() - start:.1f} s)", flush=True)
                for problem in problems:
                    print(f"    FAIL {problem}", flush=True)
                if verbose:
                    for note in info.get("notes", []):
                        print(f"    note {note}", flush=True)
        finally:
            server.shutdown()
            chrome.close()
    return report


# --------------------------------------------------------------------------- self-test
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
_HEAD = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>
<script>window.MathJax = {{"options": {{"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}},
 "tex": {{"macros": {{"E": "\\\\mathbb{{E}}"}}}}}}</script>
<script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
</head><body class="document"><h1 id="top">{title}</h1>{body}</body></html>"""
_CELL = ('<div class="cell {tags} docutils container"><div class="cell_input docutils container">'
         '<pre>{code}</pre></div><div class="cell_output docutils container">{output}</div></div>')
_TRACEBACK = ('<div class="output traceback highlight-ipythontb notranslate"><pre>Traceback '
              '(most recent call last)\nZeroDivisionError: division by zero</pre></div>')
_STDERR = '<div class="output stderr highlight-myst-ansi notranslate"><pre>oops</pre></div>'
_COLAB = '<a href="https://colab.research.google.com/github/o/r/blob/main/{path}">Colab</a>'

# page name -> (body, the problem the check must report; None for the clean page)
_SELF_TEST_PAGES = {
    "good": (
        '<p>Inline <span class="math notranslate nohighlight">\\(\\E[x^2]\\)</span>, costs 5 '
        'dollars.</p><div class="math notranslate nohighlight">\\[\\log p(x)\\]</div>'
        '<img src="../_images/dot.png"><a href="raw.html#top">next</a>' + _COLAB.format(
            path="book/good.ipynb")
        + _CELL.format(tags="tag_raises-exception", code="1/0", output=_TRACEBACK)
        + _CELL.format(tags="", code="print($1)", output="<pre>$x$ in code is fine</pre>"),
        None),
    "raw": ('<p>Here $x^2$ was never converted.</p>', "raw math"),
    "raw_paren": ('<p>Here \\(x was never closed.</p>', "raw math"),
    "no_mathjax": ('<p><span class="math notranslate nohighlight">\\(x\\)</span></p>'
                   '<!-- no MathJax script -->', "math not typeset"),
    "macro": ('<p><span class="math notranslate nohighlight">\\(\\nosuchmacro x\\)</span></p>',
              "math error"),
    "image": ('<img src="../_images/missing.png">', "broken image"),
    "link": ('<a href="nowhere.html">gone</a>', "broken link"),
    "anchor": ('<a href="good.html#no-such-section">gone</a>', "broken link"),
    "traceback": (_CELL.format(tags="", code="1/0", output=_TRACEBACK), "error output"),
    "stderr": (_CELL.format(tags="", code="warn()", output=_STDERR), "error output"),
    "no_error": (_CELL.format(tags="tag_raises-exception", code="1", output="<pre>1</pre>"),
                 "error output"),
    "colab": (_COLAB.format(path="book/other.ipynb"), "colab link"),
    "no_colab": ("<p>A notebook page without a launch button.</p>", "colab link"),
}
_NOTEBOOK_PAGES = {"good", "colab", "no_colab"}


def self_test(mathjax_dir: Path) -> bool:
    """Build a site with one defect per page; True when each is caught and the clean page passes."""
    with tempfile.TemporaryDirectory(prefix="browser-self-test-") as tmp:
        root = Path(tmp) / "html"
        repo = Path(tmp) / "repo"
        for folder in (root / "book", root / "_images", root / "_sources" / "book", repo / "book"):
            folder.mkdir(parents=True)
        (root / "_images" / "dot.png").write_bytes(_PNG)
        for name, (body, _) in _SELF_TEST_PAGES.items():
            page = _HEAD.format(title=name, body=body)
            if "<!-- no MathJax script -->" in body:
                page = MATHJAX_CDN.sub(r"\1nowhere/mathjax.js\3", page)
            (root / "book" / f"{name}.html").write_text(page, encoding="utf-8")
            if name in _NOTEBOOK_PAGES:
                (root / "_sources" / "book" / f"{name}.ipynb").write_text("{}")
        (repo / "book" / "good.ipynb").write_text("{}")
        (repo / "book" / "colab.ipynb").write_text("{}")
        (repo / "book" / "no_colab.ipynb").write_text("{}")
        report = check_book(root, mathjax_dir, None, repo, quiet=True,
                            colab_prefix="https://colab.research.google.com/github/o/r/blob/main/")
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
            print(f"self-test {name}: MISSED (expected {expected or 'no problem'}; "
                  f"found {problems})", flush=True)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument("--mathjax", type=Path, required=True, help="MathJax 3's es5 folder")
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--colab-prefix", default=COLAB_PREFIX)
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        ok = self_test(args.mathjax)
        print(f"browser check self-test: {len(_SELF_TEST_PAGES) - 1} planted defects "
              f"{'caught, clean page passed' if ok else 'NOT all caught: FAILED'}")
        return 0 if ok else 1
    if not (args.html / "index.html").is_file():
        print(f"browser check: no built book at {args.html} (run make book)")
        return 1
    start = time.perf_counter()
    report = check_book(args.html, args.mathjax, args.screenshots, args.repo,
                        args.colab_prefix, args.verbose)
    failed = sorted(name for name, problems in report.items() if problems)
    print(f"browser check: {len(report) - len(failed)} pages passed, {len(failed)} failed "
          f"in {time.perf_counter() - start:.0f} s; screenshots in {args.screenshots}/")
    for name in failed:
        print(f"  failed: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
