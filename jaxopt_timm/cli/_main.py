"""The ``jaxopt-timm`` dispatcher: ``train``, ``schedule``, ``list``, ``parity``, ``convert``.

User errors (unknown optimizer or schedule, invalid hyperparameters, a missing
or damaged checkpoint, a path that cannot be written) exit with one line on
stderr and code 2, never a traceback; an interrupted run (Ctrl-C) exits 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ._args import CLI_EXTRA, CLIError, Parser, fail, missing_extra

__all__ = ['main', 'build_parser']

PROG = 'jaxopt-timm'


def build_parser() -> argparse.ArgumentParser:
    from . import _convert, _list, _parity, _schedule, _train

    parser = Parser(prog=PROG, description="timm's optimizers and schedulers in JAX/optax: train, plot, list, verify.")
    from jaxopt_timm import __version__

    parser.add_argument('--version', action='version', version=f'{PROG} {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=Parser)
    commands = (
        ('train', _train, 'train a small Flax model on scikit-learn digits with timm train.py arguments'),
        ('schedule', _schedule, 'print a schedule from timm-style arguments and plot it to a PNG'),
        ('list', _list, 'list the optimizers with their descriptions'),
        ('parity', _parity, 'run optimizers side by side with an installed timm and print the deviations'),
        ('convert', _convert, "turn a timm train.py checkpoint (weights, optimizer state) into an orbax checkpoint"),
    )
    for name, module, help_text in commands:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter if name != 'list' else argparse.HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _prog=f'{PROG} {name}')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script and of ``python -m jaxopt_timm``; returns the exit code."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, argparse errors (already printed on one line)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if getattr(args, '_run', None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (CLIError, ValueError, KeyError, TypeError, OverflowError) as e:
        return fail(args._prog, e)
    except OSError as e:  # a path the arguments named that cannot be read or written: the path and the reason
        return fail(args._prog, CLIError(f'{e.filename or ""}: {e.strerror or e}' if e.filename else str(e)))
    except ModuleNotFoundError as e:
        # a package of the `cli` extra that no up-front check named: still one line with the install command
        if (e.name or '').split('.')[0] not in CLI_EXTRA:
            raise
        return fail(args._prog, missing_extra([e.name or '']))
    except KeyboardInterrupt:
        print(f'{args._prog}: interrupted', file=sys.stderr)
        return 130
