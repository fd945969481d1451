"""The API reference, generated from the package's ``__all__`` lists so it cannot fall behind the code.

* ``.. jt-api:: PACKAGE`` documents the public names of ``PACKAGE`` (its
  ``__all__``), one section per private submodule that defines them (the
  submodule's docstring as the section's text), each name with the autodoc
  directive its kind needs, under its public path (``jaxopt_timm.optim.adamw``,
  never ``jaxopt_timm.optim._adamw.adamw``). ``:modules:`` keeps only the named
  submodules, ``:skip-modules:`` drops some, ``:no-sections:`` gives no section
  titles (a page per submodule has its own).
* Every optimizer module (``jaxopt_timm.optim._MODULES``, the ones the registry
  loads) gets a page ``api/optim/<module>.md`` written at ``builder-inited``
  (git-ignored, rewritten only when its text changes, so an incremental build
  does not re-read it): a new optimizer module appears in the reference with no
  edit to the docs.
* After reading, every name of the packages in :data:`COVERED` must have been
  documented somewhere: a public name missing from the reference is a warning,
  an error under ``-W``.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
from types import ModuleType
from typing import Dict, Iterator, List, Sequence, Tuple

from docutils.parsers.rst import directives
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# the packages whose every public name must appear in the reference
COVERED = ('jaxopt_timm.optim', 'jaxopt_timm.transforms', 'jaxopt_timm.scheduler', 'jaxopt_timm.utils',
           'jaxopt_timm.interop')
OPTIM_PAGES = os.path.join('api', 'optim')  # the generated optimizer pages, relative to the docs folder
MAX_VALUE_REPR = 120  # a constant whose repr is longer is shown without its value


def submodule_groups(package: ModuleType, only: Sequence[str] = ()) -> Iterator[Tuple[ModuleType, List[str]]]:
    """``(submodule, names)`` for each private submodule of ``package`` (those in ``only`` when given) that
    defines public names of it, in the submodule's ``__all__`` order; a name two submodules export is
    listed under the first. Dunder modules (``__main__``) are never imported."""
    public = set(getattr(package, '__all__', ()))
    seen: set = set()
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith('_') or info.name.startswith('__') or info.ispkg:
            continue
        if only and info.name not in only:
            continue
        module = importlib.import_module(f'{package.__name__}.{info.name}')
        names = [n for n in getattr(module, '__all__', ()) if n in public and n not in seen]
        seen.update(names)
        if names:
            yield module, names


def attribute_doc(module: ModuleType, name: str) -> List[str]:
    """What the source says of a module-level constant: its ``#:`` doc comment, else the ``#`` comment block
    just above its assignment, else the comment at the end of the assignment line."""
    attr_docs = ModuleAnalyzer.for_module(module.__name__).find_attr_docs()
    if ('', name) in attr_docs:
        return list(attr_docs[('', name)])
    lines = inspect.getsource(module).splitlines()
    for i, line in enumerate(lines):
        if re.match(rf'{re.escape(name)}\s*(:[^=]*)?=', line):
            above = []
            while i - len(above) - 1 >= 0 and lines[i - len(above) - 1].startswith('#'):
                above.insert(0, lines[i - len(above) - 1].lstrip('#').strip())
            inline = line.split('  # ', 1)[1].strip() if '  # ' in line else ''
            return above or ([inline] if inline else [])
    return []


def _directive(qualified: str, obj: object, module: ModuleType) -> List[str]:
    """The autodoc directive that documents ``obj`` (defined in ``module``) under ``qualified``."""
    if inspect.isclass(obj):
        # a NamedTuple's fields have only "Alias for field number N" docstrings: the class docstring says it
        members = [] if issubclass(obj, tuple) else ['   :members:']
        return [f'.. autoclass:: {qualified}', *members, '']
    if callable(obj):
        return [f'.. autofunction:: {qualified}', '']
    # a constant: autodata would show the docstring of its type (dict's, tuple's); the source's comment instead
    value = repr(obj)
    package, name = qualified.rsplit('.', 1)
    lines = [f'.. py:data:: {name}', f'   :module: {package}', f'   :type: {type(obj).__name__}']
    if len(value) <= MAX_VALUE_REPR:
        lines.append(f'   :value: {value}')
    return lines + [''] + ['   ' + line for line in attribute_doc(module, name)] + ['']


def module_title(module: ModuleType) -> str:
    """A short title: the docstring's lead (its first line up to a colon or a parenthesis) when that is a
    plain short phrase ("AdamW", "Gradient clipping in timm's own math"), else the class name of the first
    optimizer the module registers ("Adadelta"), else the lead without its literal markup, else the module's
    own name without the underscore."""
    first = (module.__doc__ or '').strip().splitlines()[0] if module.__doc__ else ''
    lead = re.split(r':| \(', first)[0].strip().rstrip('.')
    short_enough = bool(lead) and len(lead.replace('``', '')) <= 45
    if short_enough and '`' not in lead:
        return lead
    records = getattr(module, 'OPTIMIZERS', ())
    if records:
        return records[0].timm_class.rsplit('.', 1)[1]
    if short_enough:
        return lead.replace('``', '')
    return module.__name__.rsplit('.', 1)[1].lstrip('_')


def api_rst(package: ModuleType, modules: List[str], skip: List[str], sections: bool) -> List[str]:
    """The reST text of :class:`ApiDirective`."""
    lines: List[str] = []
    for module, names in submodule_groups(package, modules):
        if module.__name__.rsplit('.', 1)[1] in skip:
            continue
        if sections:
            title = module_title(module)
            lines += [title, '-' * len(title), '']
        lines += [*inspect.cleandoc(module.__doc__ or '').splitlines(), '']
        for name in names:
            lines += _directive(f'{package.__name__}.{name}', getattr(package, name), module)
    return lines


class ApiDirective(SphinxDirective):
    """``.. jt-api:: PACKAGE``: the public names of a package, by submodule (see the module docstring)."""
    required_arguments = 1
    option_spec = {'modules': directives.unchanged, 'skip-modules': directives.unchanged,
                   'no-sections': directives.flag}

    def run(self) -> list:
        package = importlib.import_module(self.arguments[0])
        modules = self.options.get('modules', '').split()
        skip = self.options.get('skip-modules', '').split()
        lines = api_rst(package, modules, skip, 'no-sections' not in self.options)
        if not lines:
            raise self.error(f'jt-api: no public names of {package.__name__} in modules {modules or "(all)"}')
        return self.parse_text_to_nodes('\n'.join(lines), allow_section_headings=True)


def optim_page(module: ModuleType) -> str:
    """The Markdown source of one optimizer module's page."""
    short = module.__name__.rsplit('.', 1)[1]
    text = (f'<!-- generated by docs/_ext/jt_api.py from {module.__name__}: edit the docstrings, not this -->\n'
            f'# {module_title(module)}\n\n```{{eval-rst}}\n'
            f'.. jt-api:: jaxopt_timm.optim\n   :modules: {short}\n   :no-sections:\n```\n')
    if getattr(module, 'OPTIMIZERS', ()):
        text += ('\n## Registered names\n\nWhat each name builds, its state size and its deviation from the '
                 'reference: see [the optimizer table](/optimizers.md).\n\n'
                 f'```{{eval-rst}}\n.. jt-optimizer-table::\n   :module: {short}\n```\n')
    return text


def write_optim_pages(app) -> None:
    """``builder-inited``: a page per optimizer module under ``api/optim/``; stale pages removed."""
    import jaxopt_timm.optim as optim
    folder = os.path.join(app.srcdir, OPTIM_PAGES)
    os.makedirs(folder, exist_ok=True)
    pages: Dict[str, str] = {f'{m.__name__.rsplit(".", 1)[1].lstrip("_")}.md': optim_page(m)
                             for m in optim._MODULES if getattr(m, '__all__', None)}
    for name in os.listdir(folder):
        if name.endswith('.md') and name not in pages:
            os.remove(os.path.join(folder, name))
    for name, text in pages.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path) or open(path, encoding='utf-8').read() != text:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)


def check_coverage(app, env) -> None:
    """``env-check-consistency``: every public name of :data:`COVERED` is documented under its public path."""
    documented = set(env.get_domain('py').objects)
    for name in COVERED:
        package = importlib.import_module(name)
        missing = [n for n in package.__all__ if f'{name}.{n}' not in documented]
        if missing:
            logger.warning(f'{name}: public names missing from the API reference: {", ".join(missing)} '
                           '(each must be in a submodule __all__ that a jt-api directive documents)')


def setup(app) -> dict:
    app.add_directive('jt-api', ApiDirective)
    app.connect('builder-inited', write_optim_pages)
    app.connect('env-check-consistency', check_coverage)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
