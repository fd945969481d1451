"""Sphinx configuration of the jaxopt_timm documentation site.

Markdown pages (myst-parser); the API reference is autodoc over the package's
Google-style docstrings (napoleon), their ``>>>`` examples run by
``sphinx-build -b doctest``. The pages that would go stale if typed by hand
are generated at build time by the extensions in ``_ext/``: the API pages of
the optimizer modules and the coverage check of every public name
(``jt_api``), the optimizer table and the CLI reference (``jt_generated``),
the schedule gallery (``jt_gallery``); ``jt_offline`` checks the result. MathJax is served from the build
itself (``sphinx-mathjax-offline``): neither the build nor a rendered page
needs the network. ``scripts/docs.sh`` is the one command that builds and checks it all.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # the build measures shapes and draws curves: no accelerator probing
DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(DOCS, '_ext'))
sys.path.insert(0, os.path.dirname(DOCS))  # the checkout's package, not an older installed copy

import jaxopt_timm  # noqa: E402

project = 'jaxopt_timm'
author = 'jaxopt_timm contributors'
copyright = 'jaxopt_timm contributors'  # noqa: A001 (Sphinx's name)
release = version = jaxopt_timm.__version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.doctest',
    'sphinx.ext.mathjax',
    'sphinx-mathjax-offline',  # copies MathJax into _static and points mathjax_path there: no CDN
    'jt_api',
    'jt_generated',
    'jt_gallery',
    'jt_offline',  # fails the build if a page would fetch anything from another host
]

source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
root_doc = 'index'
exclude_patterns = ['_build', '_data', '_ext', '_generated', 'Thumbs.db', '.DS_Store']

# Markdown: $...$ math in the narrative pages, ::: fences, heading anchors for #links.
myst_enable_extensions = ['dollarmath', 'colon_fence', 'deflist']
myst_heading_anchors = 3

# autodoc: signatures as written (defaults unevaluated), members in source order; type hints stay in the
# signature (the docstrings' Args already say what each argument means).
autodoc_member_order = 'bysource'
autodoc_preserve_defaults = True
autodoc_typehints = 'signature'
autodoc_default_options = {'show-inheritance': False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# doctest: the ``>>>`` examples of the rendered docstrings (and the quickstart's testcode), each page in its
# own namespace
doctest_test_doctest_blocks = 'default'

html_theme = 'furo'
html_title = f'jaxopt_timm {release}'
html_static_path = ['_static']
html_css_files = ['jt.css']  # the generated tables: compact cells
html_last_updated_fmt = None
# no search-index fonts or analytics from elsewhere: furo ships its assets; MathJax is local (above)
html_theme_options = {'navigation_with_keys': True}
