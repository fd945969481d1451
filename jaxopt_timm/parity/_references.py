"""The reference implementations of the names timm lacks, built through timm's own factory.

A record whose ``source`` is not ``'timm'`` (``'schedulefree 1.4.1'``,
``'prodigyopt 1.1.2'``, ``'pytorch-optimizer 4.1.0'``) names its reference
class in ``timm_class``. For a parity run that class is registered in timm's
optimizer registry under our name, with the record's ``has_eps`` /
``has_momentum`` / ``has_betas`` flags and defaults, so timm's
``create_optimizer_v2`` builds it with exactly the param groups (weight-decay
filtering, layer decay, ``param_group_fn``) it builds for timm's own names:
the comparison differs from a timm name's only in the class at the end.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from jaxopt_timm.optim import get_optimizer_info

from ._loader import TimmNotInstalled, load_timm

__all__ = ['ensure_reference', 'prepare_reference']


def ensure_reference(name: str) -> None:
    """Make timm's factory able to build ``name``'s reference (no-op for timm's own names).

    Raises :class:`TimmNotInstalled` (a parity check must fail, never skip) when the reference package is
    missing, with the pinned install command.
    """
    info = get_optimizer_info(name)
    if info.source == 'timm':
        return
    package, _, version = info.source.partition(' ')
    module = info.timm_class.split('.', 1)[0]
    if importlib.util.find_spec(module) is None:
        raise TimmNotInstalled(
            f'{package} is not installed: it is the reference of {name!r}; install it with: pip install --no-deps '
            f'"{package}=={version}" (or run: bash scripts/install.sh)'
        )
    load_timm()
    factory = importlib.import_module('timm.optim._optim_factory')
    registry = factory.default_registry
    key = info.name.lower()
    if key in registry._optimizers:
        return
    if info.base_argument is not None:
        # a wrapper: timm's factory builds it with the wrapped name's param groups; the momentum reaches the base
        registry.register(
            factory.OptimInfo(
                name=key,
                opt_class=_wrapper_reference(info),
                description=info.description,
                has_eps=False,
                has_momentum=True,
                has_betas=False,
            )
        )
        return
    module, cls = info.timm_class.rsplit('.', 1)
    registry.register(
        factory.OptimInfo(
            name=key,
            opt_class=getattr(importlib.import_module(module), cls),
            description=info.description,
            has_eps=info.has_eps,
            has_momentum=info.has_momentum,
            has_betas=info.has_betas,
            num_betas=info.num_betas,
            second_order=info.second_order,
            defaults=dict(info.defaults),
        )
    )


def _wrapper_reference(info: Any) -> Any:
    """A builder ``(params, base=..., **kwargs)`` of the wrapper's reference class around timm's optimizer for
    ``base`` (built by timm's factory on the wrapper's param groups)."""
    module, cls = info.timm_class.rsplit('.', 1)
    wrapper = getattr(importlib.import_module(module), cls)
    timm_optim, _ = load_timm()

    def build(params: Any, **kwargs: Any) -> Any:
        base = kwargs.pop(info.base_argument, info.defaults.get(info.base_argument))
        ensure_reference(base)
        return wrapper(
            params, base_optimizer=lambda groups, **kw: timm_optim.create_optimizer_v2(groups, base, **kw), **kwargs
        )

    return build


def prepare_reference(optimizer: Any) -> Any:
    """Put a freshly built reference optimizer in training mode where it has one (Schedule-Free's ``train()``:
    its params then hold the gradient point ``y``, as ours do)."""
    train = getattr(optimizer, 'train', None)
    if callable(train):
        train()
    return optimizer
