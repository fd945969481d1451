"""``jaxopt-timm convert``: a timm ``train.py`` checkpoint to an orbax checkpoint that continues the run in JAX.

timm's train.py saves ``{'epoch', 'state_dict', 'optimizer', 'state_dict_ema'?, ...}`` with ``torch.save``.
Given the param-name mapping (a JSON object ``{torch name: JAX leaf name}`` in the torch model's
``named_parameters()`` order, JAX names ``.``-joined as :func:`jaxopt_timm.optim.leaf_names` gives them), this
writes an orbax ``StandardCheckpointer`` checkpoint of ``{'params', 'opt_state', 'step'[, 'ema']}``: the
weights (transposed with ``--layout flax``), the optimizer state from :func:`jaxopt_timm.interop.from_timm` for
``--opt`` and the optimizer arguments given, and the number of updates made. Restore it with
``ocp.StandardCheckpointer().restore(path)`` and a target built from ``create_optimizer_v2(params, ...).init``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict

import numpy as np

from ._args import CLIError, require_extra

__all__ = ['add_arguments', 'run', 'convert']


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('checkpoint', help="timm train.py checkpoint (torch.save'd dict with 'state_dict' and 'optimizer')")
    p.add_argument(
        '--names',
        required=True,
        metavar='JSON',
        help="JSON file: {torch param name: JAX leaf name}, in the model's named_parameters() order",
    )
    p.add_argument('--output', required=True, metavar='DIR', help='the orbax checkpoint to write (must not exist)')
    p.add_argument('--opt', default='sgd', help="timm's --opt the run used")
    p.add_argument('--lr', type=float, default=None, help="the run's lr (the optimizer's param groups keep theirs)")
    p.add_argument('--weight-decay', type=float, default=0.0, help="timm's --weight-decay")
    p.add_argument('--momentum', type=float, default=0.9, help="timm's --momentum")
    p.add_argument('--layer-decay', type=float, default=None, help="timm's --layer-decay")
    p.add_argument(
        '--layout',
        choices=('torch', 'flax'),
        default='torch',
        help='the JAX leaves: torch layouts, or Flax (Dense (in, out), conv (*k, I, O))',
    )
    p.add_argument(
        '--updates-per-epoch',
        type=int,
        default=None,
        help="for optimizers that keep no step count (SGD, Lion, ...): the checkpoint's 'epoch' times "
        'this is the number of updates made',
    )


def _load(path: str) -> Dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise CLIError('convert reads a torch checkpoint: install torch (pip install "torch==2.13.0")') from None
    if not os.path.isfile(path):
        raise CLIError(f'{path}: no such checkpoint file')
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    missing = [k for k in ('state_dict', 'optimizer') if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CLIError(f'{path}: not a timm train.py checkpoint (no {missing}); save one with --output in timm')
    return ckpt


def convert(args: argparse.Namespace) -> Dict[str, Any]:
    """The converted ``{'params', 'opt_state', 'step'[, 'ema']}`` (what ``run`` writes)."""
    import jax.numpy as jnp

    import jaxopt_timm as jt
    from jaxopt_timm.parity import to_tree
    from jaxopt_timm.transforms import from_torch_layout

    with open(args.names) as f:
        mapping = json.load(f)
    if not isinstance(mapping, dict) or not mapping or not all(isinstance(v, str) for v in mapping.values()):
        raise CLIError(f'--names {args.names}: expected a JSON object {{torch name: JAX leaf name}}')
    ckpt = _load(args.checkpoint)

    def weights(state_dict: Dict[str, Any], what: str) -> Dict[str, Any]:
        absent = [k for k in mapping if k not in state_dict]
        if absent:
            raise CLIError(f"--names {args.names}: {absent[:5]} are not in the checkpoint's {what}")
        return to_tree(
            {
                mapping[k]: jnp.asarray(from_torch_layout(state_dict[k].detach().float().numpy(), args.layout))
                for k in mapping
            }
        )

    params = weights(ckpt['state_dict'], 'state_dict')
    kwargs = dict(lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum, layer_decay=args.layer_decay)
    info = jt.get_optimizer_info(args.opt)
    if not info.has_momentum:
        kwargs.pop('momentum')
    step = None
    if args.updates_per_epoch is not None:
        if args.updates_per_epoch < 1:
            raise CLIError(f'invalid --updates-per-epoch {args.updates_per_epoch}: must be >= 1')
        step = (int(ckpt.get('epoch', -1)) + 1) * args.updates_per_epoch  # train.py saves the last finished epoch
    opt_state = jt.interop.from_timm(
        ckpt['optimizer'], params, list(mapping.values()), args.opt, step=step, layout=args.layout, **kwargs
    )
    counts = [int(np.asarray(x)) for x in jt_counts(opt_state)]
    out = {'params': params, 'opt_state': opt_state, 'step': jnp.asarray(max(counts) if counts else 0, jnp.int32)}
    if ckpt.get('state_dict_ema') is not None:
        out['ema'] = weights(ckpt['state_dict_ema'], 'state_dict_ema')
    return out


def jt_counts(opt_state: Any):
    """The update counters of an optimizer state (its ``count`` fields)."""
    from jaxopt_timm.interop._slots import COUNT_FIELDS, state_slots

    return [s.leaf for s in state_slots(opt_state, {}) if s.field in COUNT_FIELDS]


def run(args: argparse.Namespace) -> int:
    require_extra('orbax.checkpoint')
    import orbax.checkpoint as ocp

    out_dir = os.path.abspath(args.output)
    if os.path.exists(out_dir):
        raise CLIError(f'--output {args.output} exists: choose a new path')
    converted = convert(args)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(out_dir, converted)
    print(
        f'wrote {out_dir}: params, opt_state ({args.opt}, step {int(converted["step"])})'
        + (', ema' if 'ema' in converted else '')
    )
    return 0
