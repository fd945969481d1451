"""``jaxopt-timm list``: the registered optimizers with their descriptions, filtered like ``list_optimizers``."""

from __future__ import annotations

import argparse

import jaxopt_timm as jt

__all__ = ['add_arguments', 'run']


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('filter', nargs='*', default=[], help="fnmatch patterns, e.g. 'adam*' '*lamb*' (default: all)")
    p.add_argument('--exclude', nargs='+', default=[], metavar='PATTERN', help='fnmatch patterns to leave out')
    p.add_argument('--names-only', action='store_true', help='names only, one per line')


def run(args: argparse.Namespace) -> int:
    rows = jt.list_optimizers(filter=args.filter or '', exclude_filters=args.exclude, with_description=True)
    if args.names_only:
        for name, _ in rows:
            print(name)
        return 0
    if not rows:
        print('no optimizer matches')
        return 1
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        info = jt.get_optimizer_info(name)
        flags = []
        if info.second_order:
            flags.append('second order')
        if info.grad_fn:
            flags.append('update needs grad_fn')
        if info.source != 'timm':
            flags.append(f'reference: {info.source}')
        if info.defaults:
            flags.append(', '.join(f'{k}={v}' for k, v in info.defaults.items()))
        extra = f"  [{'; '.join(flags)}]" if flags else ''
        print(f'{name:<{width}}  {desc}{extra}')
    print(f'{len(rows)} optimizer(s)')
    return 0
