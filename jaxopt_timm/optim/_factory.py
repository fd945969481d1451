"""``create_optimizer_v2`` / ``create_optimizer``: timm's factory over params trees."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Collection, Optional

import jax
import optax

from .._validate import check_lr, check_range
from ._lookahead import lookahead
from ._param_groups import ParamGroups, build_param_groups, params_of
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

    check_range('layer_decay', layer_decay, 0.0, 1.0, allow_none=True)
    check_range('layer_decay_min_scale', layer_decay_min_scale, 0.0, 1.0)
    check_range('layer_decay_no_opt_scale', layer_decay_no_opt_scale, 0.0, 1.0, allow_none=True)

    parts = opt.lower().split('_')
    opt_name = parts[-1]
    use_lookahead = len(parts) > 1 and parts[0] == 'lookahead'
    if len(parts) > 1 and not use_lookahead:
        raise ValueError(f"Invalid opt: {opt!r}, the only supported prefix is 'lookahead_'")
    info = get_optimizer_info(opt_name)

    params = params_of(model_or_params)
    groups = build_param_groups(
        params, weight_decay, filter_bias_and_bn, no_weight_decay_list, fallback_list, fallback_no_weight_decay,
        layer_decay, layer_decay_min_scale, layer_decay_no_opt_scale, param_group_fn, group_matcher, head_prefix)

    opt_args = dict(kwargs)
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

    _check_kwargs(info, set(opt_args) | {o for ov in groups.overrides for o in ov})
    tx = _grouped_transform(info, opt_args, groups, params)
    if use_lookahead:
        tx = lookahead(tx)
    return tx


def _check_kwargs(info, names):
    accepted = inspect.signature(info.alias).parameters
    if any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        return
    unknown = sorted(set(names) - set(accepted))
    if unknown:
        raise ValueError(
            f'Invalid argument(s) {unknown} for optimizer {info.name!r}; accepted: {sorted(accepted)}')


def _masked_like(tree: Any, keep: list) -> Any:
    """``tree`` with the leaves where ``keep`` is False replaced by optax's MaskedNode (as optax.masked passes)."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [v if k else optax.MaskedNode() for v, k in zip(leaves, keep)])


def _grouped_transform(info, opt_args: dict, groups: ParamGroups, params: Any) -> optax.GradientTransformation:
    """One transformation for the whole tree; per-leaf trees carry the groups' lr scales and weight decays.

    Leaves excluded from optimization (``trainable`` False) get zero updates and
    no state. Leaves whose ``param_group_fn`` group overrides other optimizer
    arguments (betas, eps, ...) are split into one transformation per distinct
    override set with ``optax.multi_transform``; statistics timm computes over
    all groups (Lamb's global grad norm) are then per split.
    """
    trainable = jax.tree.leaves(groups.trainable)
    scales = jax.tree.leaves(groups.lr_scale)
    accepts_fallback = 'use_fallback' in inspect.signature(info.alias).parameters
    labels = [repr(sorted(ov.items())) if keep else '__frozen__' for ov, keep in zip(groups.overrides, trainable)]
    partitions = {}
    for label, ov in zip(labels, groups.overrides):
        partitions.setdefault(label, ov)

    def build(label: str, override: dict):
        keep = [lab == label for lab in labels]
        args = dict(opt_args)
        args.update(override)
        args['weight_decay'] = _masked_like(groups.weight_decay, keep)
        if any(s != 1.0 for s, k in zip(scales, keep) if k):
            args['lr_scale'] = _masked_like(groups.lr_scale, keep)
        if accepts_fallback:
            args['use_fallback'] = _masked_like(groups.use_fallback, keep)
        return info.alias(**args)

    live = [lab for lab in partitions if lab != '__frozen__']
    if len(live) == 1 and '__frozen__' not in partitions:
        return build(live[0], partitions[live[0]])
    transforms = {label: build(label, partitions[label]) for label in live}
    if '__frozen__' in partitions:
        transforms['__frozen__'] = optax.set_to_zero()
    label_tree = jax.tree.unflatten(jax.tree.structure(params), labels)
    return optax.multi_transform(transforms, label_tree)


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
