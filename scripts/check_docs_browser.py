"""Open the built documentation in a real browser (headless Chromium) and check what a reader would see.

A successful ``sphinx-build`` proves the pages were written, not that they
render: MathJax runs in the browser, and a missing asset, a TeX error in a
docstring or a page that needs the network shows only there. This script
serves ``docs/_build/html`` on 127.0.0.1 (every host name made unresolvable,
so nothing can come from the network), and for the home page and the page
that documents ``jaxopt_timm.optim.adamw``:

* dumps the DOM after the scripts ran (``--dump-dom`` with a virtual time
  budget) and checks the page's title and heading, that MathJax typeset every
  math element (an ``mjx-container`` per ``class="math"`` element, no
  ``mjx-merror``) and that no raw TeX delimiter (``\\(``, ``\\[``, ``$$``) is
  left in the text outside code;
* checks that every request the browser made was served (no 404: a MathJax
  font or component missing from ``_static``);
* takes a screenshot (kept in ``docs/_build/screenshots/``, a CI artifact)
  and checks it is not blank (pixel variance, via ``matplotlib.image.imread``).

Usage: ``python scripts/check_docs_browser.py [docs/_build/html]``; exit code 0
when every check passes, 1 with the reasons otherwise. Needs Debian's
``chromium`` (``scripts/install.sh`` installs it).
"""
from __future__ import annotations

import functools
import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADAMW = 'jaxopt_timm.optim.adamw'
# (page, text its <title> must contain, text its first <h1> must contain); the adamw page is found at run time
TIME_BUDGET_MS = 10000  # virtual time for MathJax to load its components and typeset
MIN_STD = 0.02  # grey-level standard deviation below which a screenshot counts as blank
TEX_DELIMITERS = ('\\(', '\\)', '\\[', '\\]', '$$')


def chromium() -> str:
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit('check_docs_browser: no chromium on PATH; install it (or run bash scripts/install.sh): '
                     'apt-get update && apt-get install -y --no-install-recommends chromium')


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the build quietly and records every request with its status."""
    requests: List[Tuple[str, int]] = []

    def log_request(self, code='-', size='-') -> None:
        self.requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args) -> None:
        pass


def serve(folder: str) -> Tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Handler, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f'http://127.0.0.1:{server.server_address[1]}'


def run_chromium(url: str, *args: str) -> str:
    """Chromium headless on ``url`` with ``args`` (``--dump-dom`` or ``--screenshot=PATH``); its stdout."""
    cmd = [chromium(), '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
           '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--hide-scrollbars',
           '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', f'--virtual-time-budget={TIME_BUDGET_MS}',
           '--window-size=1280,1000', *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f'chromium exited {proc.returncode}: {proc.stderr[-2000:]}')
    return proc.stdout


def find_page(folder: str, object_id: str) -> Optional[str]:
    """The built page (relative path) that holds the definition ``id="object_id"``."""
    needle = f'id="{object_id}"'
    for sub, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if name.endswith('.html'):
                path = os.path.join(sub, name)
                with open(path, encoding='utf-8') as f:
                    if needle in f.read():
                        return os.path.relpath(path, folder).replace(os.sep, '/')
    return None


def visible_text(dom: str) -> str:
    """The text a reader sees outside code and typeset math."""
    for tag in ('script', 'style', 'pre', 'code', 'mjx-container', 'mjx-assistive-mml', 'textarea'):
        dom = re.sub(rf'<{tag}\b.*?</{tag}>', ' ', dom, flags=re.S | re.I)
    return html.unescape(re.sub(r'<[^>]+>', ' ', dom))


def check_dom(page: str, static_html: str, dom: str, title: str, heading: str) -> List[str]:
    problems = []
    got_title = re.search(r'<title>(.*?)</title>', dom, re.S)
    if not got_title or title not in html.unescape(got_title.group(1)):
        problems.append(f'{page}: <title> {got_title.group(1) if got_title else None!r} lacks {title!r}')
    h1 = re.search(r'<h1\b[^>]*>(.*?)</h1>', dom, re.S)
    if not h1 or heading not in html.unescape(re.sub(r'<[^>]+>', '', h1.group(1))):
        problems.append(f'{page}: no <h1> with {heading!r}')
    expected = len(re.findall(r'class="math[\s"]', static_html))  # not math-wrapper, its container
    typeset = dom.count('<mjx-container')
    if typeset < expected:
        problems.append(f'{page}: MathJax typeset {typeset} of {expected} math elements')
    if '<mjx-merror' in dom:  # the element; the name alone is also in MathJax's stylesheet
        problems.append(f'{page}: MathJax reports a TeX error (mjx-merror) in the page')
    text = visible_text(dom)
    for delimiter in TEX_DELIMITERS:
        if delimiter in text:
            at = text.index(delimiter)
            problems.append(f'{page}: raw TeX left in the text: ...{" ".join(text[at - 60:at + 60].split())}...')
    return problems


def check_screenshot(page: str, path: str) -> List[str]:
    import matplotlib.image
    import numpy as np
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return [f'{page}: no screenshot written to {path}']
    pixels = np.asarray(matplotlib.image.imread(path), np.float64)[..., :3]
    std = float(pixels.mean(axis=-1).std())
    return [] if std >= MIN_STD else [f'{page}: screenshot {path} looks blank (grey-level std {std:.4f})']


def main(argv: List[str]) -> int:
    folder = os.path.abspath(argv[0] if argv else os.path.join(ROOT, 'docs', '_build', 'html'))
    shots = os.path.join(os.path.dirname(folder), 'screenshots')
    os.makedirs(shots, exist_ok=True)
    adamw_page = find_page(folder, ADAMW)
    if adamw_page is None:
        print(f'check_docs_browser: no page in {folder} documents {ADAMW}')
        return 1
    pages = [('index.html', 'jaxopt_timm', 'jaxopt_timm'), (adamw_page, 'AdamW', 'AdamW')]
    server, base = serve(folder)
    problems: List[str] = []
    try:
        for page, title, heading in pages:
            _Handler.requests.clear()
            with open(os.path.join(folder, page), encoding='utf-8') as f:
                static_html = f.read()
            dom = run_chromium(f'{base}/{page}', '--dump-dom')
            # a browser asks for /favicon.ico unasked; anything else missing is an asset the build lacks
            missing = sorted({p for p, code in _Handler.requests if code >= 400 and p != '/favicon.ico'})
            problems += [f'{page}: the browser asked for {p}, which the build lacks' for p in missing]
            problems += check_dom(page, static_html, dom, title, heading)
            shot = os.path.join(shots, page.replace('/', '_').replace('.html', '.png'))
            run_chromium(f'{base}/{page}', f'--screenshot={shot}')
            problems += check_screenshot(page, shot)
            print(f'{page}: {dom.count("<mjx-container")} math elements typeset, {len(_Handler.requests)} requests '
                  f'served, screenshot {os.path.relpath(shot, ROOT)}')
    finally:
        server.shutdown()
    for problem in problems:
        print(f'FAIL {problem}')
    print('browser check: ' + ('ok' if not problems else f'{len(problems)} problem(s)'))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
