"""The built site must render without the network: no page may load anything from another host.

At ``build-finished`` every HTML page is scanned for resources a browser would
fetch on its own (``<script src>``, ``<link href>`` of stylesheets, icons and
preloads, ``<img src>``, ``<iframe src>``, CSS ``@import``/``url()``) that
point at another host, and for the hosts of the usual CDNs anywhere in the
page; each hit is a warning, an error under ``-W``. Ordinary links
(``<a href>``: the papers a docstring cites, the theme's credit) are not
fetched and are allowed. MathJax comes from ``sphinx-mathjax-offline``
(``_static/mathjax``).
"""
from __future__ import annotations

import os
import re
from typing import Iterator, Tuple

from sphinx.util import logging

logger = logging.getLogger(__name__)

CDN_HOSTS = ('cdn.jsdelivr.net', 'cdnjs.cloudflare.com', 'unpkg.com', 'fonts.googleapis.com', 'fonts.gstatic.com',
             'ajax.googleapis.com', 'cdn.mathjax.org', 'polyfill.io', 'code.jquery.com', 'stackpath.bootstrapcdn.com')
_REMOTE = r'(?:https?:)?//'
# resources a page fetches by itself when it is opened
_FETCHED = (
    re.compile(rf'<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc\s*=\s*["\']?({_REMOTE}[^"\'\s>]+)', re.I),
    re.compile(rf'<link\b(?=[^>]*\brel\s*=\s*["\']?[^"\'>]*(?:stylesheet|icon|preload|modulepreload|manifest))'
               rf'[^>]*\bhref\s*=\s*["\']?({_REMOTE}[^"\'\s>]+)', re.I),
    re.compile(rf'@import\s+(?:url\()?["\']?({_REMOTE}[^"\'\s)]+)', re.I),
    re.compile(rf'url\(\s*["\']?({_REMOTE}[^"\'\s)]+)', re.I),
)


def remote_resources(html: str) -> Iterator[Tuple[str, str]]:
    """``(kind, url)`` of each resource in ``html`` that would be fetched from another host."""
    for pattern in _FETCHED:
        for match in pattern.finditer(html):
            yield 'fetched', match.group(1)
    for host in CDN_HOSTS:
        if host in html:
            yield 'CDN host', host


def check_offline(app, exc) -> None:
    """``build-finished``: warn for every page that would need the network."""
    if exc is not None or app.builder.format != 'html':
        return
    for folder, _, files in os.walk(app.outdir):
        for name in files:
            if name.endswith('.html'):
                path = os.path.join(folder, name)
                with open(path, encoding='utf-8') as f:
                    for kind, url in remote_resources(f.read()):
                        logger.warning(f'{os.path.relpath(path, app.outdir)}: needs the network ({kind}: {url})')


def setup(app) -> dict:
    app.connect('build-finished', check_offline)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
