"""``create_optimizer_v2`` / ``create_optimizer``: timm's factory over params trees."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Collection, Optional

import optax

from .._validate import check_lr, check_range
from ._lookahead import lookahead
from ._param_groups import params_of, weight_decay_tree
from ._registry import get_optimizer_info

__all__ = ['create_optimizer_v2', 'create_optimizer', 'optimizer_kwargs']


def create_optimizer_v2(
        model_or_params: Any,
        opt: str = 'sgd',
        lr: Optional[Any] = None,
        weight_decay: float = 0.,
        momentum: float = 0.9,
        filter_bias_and_bn: bool = True,
        fallback_list: Collection[str] = (),
        fallback_no_weight_decay: bool = False,
        layer_decay: Optional[float] = None,
        layer_decay_min_scale: float = 0.,
        layer_decay_no_opt_scale: Optional[float] = None,
        param_group_fn: Optional[Callable[..., Any]] = None,
        *,
        no_weight_decay_list: Collection[str] = (),
        group_matcher: Any = None,
        head_prefix: Optional[str] = None,
        **kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    """Build a registered optimizer for a params tree, with timm's param grouping and defaults.

    Mirrors ``timm.optim.create_optimizer_v2``: ``opt`` may carry a
    ``lookahead_`` prefix; ``lr=None`` keeps the optimizer's default; momentum
    defaults to 0.9 for optimizers that have one; ``eps``/``betas`` are dropped
    for optimizers without them; the registry entry's defaults are bound.
    Weight decay is applied per leaf as timm's ``param_groups_weight_decay``
    groups it (no decay on ``ndim <= 1`` leaves and ``.bias`` names when
    ``filter_bias_and_bn``, nor on ``no_weight_decay_list`` patterns).

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> params = {'fc': {'weight': jnp.ones((4, 3)), 'bias': jnp.zeros(4)}}
        >>> tx = jt.create_optimizer_v2(params, 'adamw', lr=1e-3, weight_decay=0.05)
        >>> state = tx.init(params)
    """
    if not isinstance(opt, str):
        raise ValueError(f'Invalid opt: {opt!r}, expected an optimizer name (see list_optimizers())')
    if lr is not None:
        check_lr(lr, 'lr')
    check_range('weight_decay', weight_decay, 0.0)
    check_range('momentum', momentum, 0.0)

    unsupported = {
        'layer_decay': layer_decay, 'param_group_fn': param_group_fn, 'group_matcher': group_matcher,
        'head_prefix': head_prefix,
    }
    for key, value in unsupported.items():
        if value is not None:
            raise NotImplementedError(f'{key} is not supported yet in this version of jaxopt_timm')
    if fallback_list or fallback_no_weight_decay:
        raise NotImplementedError('fallback_list / fallback_no_weight_decay are not supported yet')
    del layer_decay_min_scale, layer_decay_no_opt_scale

    parts = opt.lower().split('_')
    opt_name = parts[-1]
    use_lookahead = len(parts) > 1 and parts[0] == 'lookahead'
    if len(parts) > 1 and not use_lookahead:
        raise ValueError(f"Invalid opt: {opt!r}, the only supported prefix is 'lookahead_'")
    info = get_optimizer_info(opt_name)

    params = params_of(model_or_params)
    wd = weight_decay_tree(params, weight_decay, filter_bias_and_bn, no_weight_decay_list)

    opt_args = {'weight_decay': wd, **kwargs}
    opt_args.pop('foreach', None)  # torch's multi-tensor switch; XLA fuses either way
    if lr is not None:
        opt_args['learning_rate'] = lr
    for k, v in info.defaults.items():
        opt_args.setdefault(k, v)
    if info.has_momentum:
        opt_args.setdefault('momentum', momentum)
    if not info.has_eps:
        opt_args.pop('eps', None)
    if not info.has_betas:
        opt_args.pop('betas', None)
    if 'lr' in opt_args:
        raise ValueError("Invalid argument 'lr' in kwargs: pass the learning rate as create_optimizer_v2(lr=...)")

    accepted = inspect.signature(info.alias).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(opt_args) - set(accepted))
        if unknown:
            raise ValueError(
                f'Invalid argument(s) {unknown} for optimizer {info.name!r}; accepted: '
                f'{sorted(k for k in accepted)}')
    tx = info.alias(**opt_args)
    if use_lookahead:
        tx = lookahead(tx)
    return tx


def optimizer_kwargs(cfg: Any) -> dict:
    """argparse/namespace ``cfg`` -> keyword arguments of :func:`create_optimizer_v2` (timm's names)."""
    kwargs = dict(
        opt=cfg.opt,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
    )
    if getattr(cfg, 'opt_eps', None) is not None:
        kwargs['eps'] = cfg.opt_eps
    if getattr(cfg, 'opt_betas', None) is not None:
        kwargs['betas'] = tuple(cfg.opt_betas)
    for key in ('layer_decay', 'layer_decay_min_scale', 'layer_decay_no_opt_scale'):
        if getattr(cfg, key, None) is not None:
            kwargs[key] = getattr(cfg, key)
    if getattr(cfg, 'opt_args', None) is not None:
        kwargs.update(cfg.opt_args)
    return kwargs


def create_optimizer(args: Any, model_or_params: Any, filter_bias_and_bn: bool = True, **kwargs: Any):
    """argparse form: ``create_optimizer_v2(model_or_params, **optimizer_kwargs(args))``."""
    return create_optimizer_v2(
        model_or_params, **optimizer_kwargs(args), filter_bias_and_bn=filter_bias_and_bn, **kwargs)
