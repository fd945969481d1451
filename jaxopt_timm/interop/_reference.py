"""timm's own param groups for a state_dict we write, read from timm's factory on a shape-only torch model.

torch's ``Optimizer.load_state_dict`` replaces each group's settings with the
saved ones, so a state_dict for timm must carry every hyperparameter timm's
optimizer keeps (``foreach``, ``maximize``, ``decoupled_weight_decay``, ...).
The one source of them is timm itself: its factory runs on a model whose
parameters are torch ``meta`` tensors of the params' torch shapes (nothing is
allocated). torch and timm are imported only here, only when called.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from jaxopt_timm.transforms import torch_axes

__all__ = ['reference_param_groups']

_OURS_ONLY = ('pack_leaves', 'skip_nonfinite', 'layout', 'group_matcher', 'no_weight_decay_list', 'head_prefix')


def _meta_module(params_np: Mapping[str, Any], names: Sequence[str], layout: str, kwargs: Mapping[str, Any]):
    import torch

    root = torch.nn.Module()
    for name in names:
        stored = np.shape(params_np[name])
        shape = tuple(stored[a] for a in torch_axes(len(stored), layout))
        mod = root
        *parents, leaf = name.split('.')
        for part in parents:
            if not hasattr(mod, part):
                mod.add_module(part, torch.nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, torch.nn.Parameter(torch.empty(shape, device='meta')))
    if kwargs.get('no_weight_decay_list'):
        # timm's model hooks (setattr: torch types a Module's attributes as Tensor | Module)
        setattr(root, 'no_weight_decay', lambda: set(kwargs['no_weight_decay_list']))
    if kwargs.get('group_matcher') is not None:
        setattr(root, 'group_matcher', lambda coarse=False: kwargs['group_matcher'])
    return root


def reference_param_groups(
    opt: str, params_np: Mapping[str, Any], names: Sequence[str], layout: str, kwargs: Mapping[str, Any], step: int
) -> Optional[List[Dict[str, Any]]]:
    """timm's ``create_optimizer_v2(model, opt, **kwargs).state_dict()['param_groups']`` for a model with these
    names and shapes (the lr a schedule gives at ``step``); ``None`` when torch or timm is not importable."""
    from jaxopt_timm.parity import TimmNotInstalled, ensure_reference, load_timm, prepare_reference

    try:
        timm_optim, _ = load_timm()
    except TimmNotInstalled:
        return None
    ensure_reference(opt)
    accepted = set(inspect.signature(timm_optim.create_optimizer_v2).parameters)
    accepted |= set(inspect.signature(timm_optim.get_optimizer_info(opt.split('_')[-1]).opt_class).parameters)
    # arguments of ours only (state dtypes, layouts, reference-mode switches) are not timm's to take
    timm_kwargs = {k: v for k, v in kwargs.items() if k not in _OURS_ONLY and k in accepted}
    if callable(timm_kwargs.get('lr')):
        timm_kwargs['lr'] = float(timm_kwargs['lr'](step))
    module = _meta_module(params_np, names, layout, kwargs)
    optimizer = prepare_reference(timm_optim.create_optimizer_v2(module, opt, **timm_kwargs))
    return optimizer.state_dict()['param_groups']
