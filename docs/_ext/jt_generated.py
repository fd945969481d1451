"""The pages that would go stale if typed by hand: the optimizer table and the CLI reference.

* ``.. jt-optimizer-table::`` is the registry as a table: every name of
  ``jt.list_optimizers()`` with its record's reference class, source and
  description, the optimizer state's bytes per param byte (measured with
  ``jax.eval_shape`` of ``init``: nothing is allocated) and the parity
  deviation from a stored run of ``jaxopt-timm parity`` (``_data/parity.json``,
  never typed by hand; a registered name without a stored result is a warning,
  an error under ``-W``). ``:module: _adamw`` keeps the names of one optimizer
  module (its API page).
* ``.. jt-cli::`` is the help of ``jaxopt-timm`` and of each subcommand, from
  the argparse parser itself (``jaxopt_timm.cli._main.build_parser``).

Both record the files they read as dependencies, so an incremental build
re-reads their pages when the stored run or the CLI changes.
"""
from __future__ import annotations

import functools
import json
import os
import re
from typing import Any, Dict, List

from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PARITY_JSON = os.path.join('_data', 'parity.json')  # relative to the docs folder
PARITY_COMMAND = 'jaxopt-timm parity --opt all --sched all --json docs/_data/parity.json'
# the tree the state is measured on: a conv kernel, a dense kernel and a bias (float32), so the factored and
# matrix-shaped optimizers (Adafactor, Muon, Shampoo, SOAP, Kron) show what they keep for kernels
STATE_TREE = {'conv': (3, 3, 16, 32), 'dense': (64, 32), 'bias': (32,)}
CLI_COLUMNS = '88'  # argparse wraps its help to the terminal width: fixed, and narrow enough for the page


def rst_escape(text: str) -> str:
    """Plain text safe inside a reST table cell (no inline markup, no references)."""
    return re.sub(r'([\\`*_|<>])', r'\\\1', str(text))


def load_parity(srcdir: str) -> Dict[str, Any]:
    """The stored ``jaxopt-timm parity --json`` run ({} when absent: each missing name then warns)."""
    path = os.path.join(srcdir, PARITY_JSON)
    if not os.path.exists(path):
        return {}
    with open(path, encoding='utf-8') as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def state_bytes_ratio(name: str) -> float:
    """Bytes of ``create_optimizer_v2(params, name).init(params)`` over bytes of the params, on
    :data:`STATE_TREE`, from shapes only (``jax.eval_shape``)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import jaxopt_timm as jt
    params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in STATE_TREE.items()}

    def nbytes(tree: Any) -> int:
        return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))

    state = jax.eval_shape(jt.create_optimizer_v2(params, name, lr=1e-3).init, params)
    return nbytes(state) / nbytes(params)


def optimizer_modules() -> Dict[str, str]:
    """Registered name -> the short name of the optimizer module that registers it (``adamw`` -> ``_adamw``)."""
    import jaxopt_timm.optim as optim
    return {r.name: m.__name__.rsplit('.', 1)[1] for m in optim._MODULES for r in getattr(m, 'OPTIMIZERS', ())}


def _deviation_cell(entry: Dict[str, Any]) -> str:
    if entry.get('deviation') is None:
        return rst_escape(entry.get('result', 'no result'))
    mode = f" ({rst_escape(entry['mode'])})" if entry.get('mode') else ''
    fail = '' if entry.get('result', 'ok') == 'ok' else f" **{rst_escape(entry['result'])}**"
    return f"{entry['deviation']:.1e}{mode}{fail}"


class OptimizerTableDirective(SphinxDirective):
    """``.. jt-optimizer-table::``: the registry, measured state sizes and the stored parity run."""
    option_spec = {'module': directives.unchanged}

    def run(self) -> list:
        import jaxopt_timm as jt
        self.env.note_dependency(os.path.join(self.env.srcdir, PARITY_JSON))
        parity = load_parity(str(self.env.srcdir))
        modules = optimizer_modules()
        only = self.options.get('module')
        names = [n for n in jt.list_optimizers() if only is None or modules.get(n) == only]
        if not names:
            raise self.error(f'jt-optimizer-table: no registered optimizer in module {only!r}')
        header = ['name', 'reference (source)', 'description', 'state / params', 'parity deviation']
        lines = ['.. list-table::', '   :header-rows: 1', '   :class: jt-optimizers', '   :widths: 13 30 33 9 15', '']
        for row in [header] + [self._row(n, modules, parity, link=only is None) for n in names]:
            lines += [f'   * - {row[0]}'] + [f'     - {cell}' for cell in row[1:]]
        return self.parse_text_to_nodes('\n'.join(lines))

    def _row(self, name: str, modules: Dict[str, str], parity: Dict[str, Any], link: bool) -> List[str]:
        import jaxopt_timm as jt
        info = jt.get_optimizer_info(name)
        page = modules.get(name, '').lstrip('_')
        cell = f':doc:`{name} </api/optim/{page}>`' if link and page else f'``{name}``'
        if name not in parity:
            logger.warning(f'{PARITY_JSON}: no stored parity result for {name!r}; run: {PARITY_COMMAND}',
                           location=(self.env.docname, self.lineno))
        entry = parity.get(name, {'result': 'no stored run'})
        source = '' if info.source == 'timm' else f' ({rst_escape(info.source)})'
        return [cell, f'``{info.timm_class}``{source}', rst_escape(info.description) or '-',
                f'{state_bytes_ratio(name):.2f}', _deviation_cell(entry)]


class ParityModesDirective(SphinxDirective):
    """``.. jt-parity-modes::``: what each reference mode of the table changes on both sides."""

    def run(self) -> list:
        from jaxopt_timm.parity import PARITY_MODES
        lines = [f'``{key}`` ({rst_escape(mode.family)})\n   {rst_escape(mode.description)}\n'
                 for key, mode in PARITY_MODES.items()]
        return self.parse_text_to_nodes('\n'.join(lines))


def _subcommands(parser) -> List[Any]:
    """``(name, help, parser)`` of each subcommand, in the dispatcher's order."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            return [(name, helps.get(name, ''), sub) for name, sub in action.choices.items()]
    return []


class CliDirective(SphinxDirective):
    """``.. jt-cli::``: ``jaxopt-timm --help`` and each ``jaxopt-timm COMMAND --help``, from the parser."""

    def run(self) -> list:
        from jaxopt_timm.cli import _main
        cli_dir = os.path.dirname(os.path.abspath(_main.__file__))
        for fname in sorted(os.listdir(cli_dir)):
            if fname.endswith('.py'):
                self.env.note_dependency(os.path.join(cli_dir, fname))
        previous = os.environ.get('COLUMNS')
        os.environ['COLUMNS'] = CLI_COLUMNS
        try:
            parser = _main.build_parser()
            lines = self._block('jaxopt-timm', '', parser.format_help())
            for name, help_text, sub in _subcommands(parser):
                lines += self._block(f'jaxopt-timm {name}', help_text, sub.format_help())
        finally:
            if previous is None:
                os.environ.pop('COLUMNS', None)
            else:
                os.environ['COLUMNS'] = previous
        return self.parse_text_to_nodes('\n'.join(lines), allow_section_headings=True)

    @staticmethod
    def _block(title: str, help_text: str, usage: str) -> List[str]:
        lines = [title, '-' * len(title), '']
        if help_text:
            lines += [rst_escape(help_text[0].upper() + help_text[1:]) + '.', '']
        return lines + ['.. code-block:: text', ''] + ['   ' + ln for ln in usage.rstrip().splitlines()] + ['']


def setup(app) -> dict:
    app.add_directive('jt-optimizer-table', OptimizerTableDirective)
    app.add_directive('jt-parity-modes', ParityModesDirective)
    app.add_directive('jt-cli', CliDirective)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
