"""Schedule-Free AdamW, SGD and RAdam (``schedulefree`` 1.4.1: ``AdamWScheduleFree``, ``SGDScheduleFree``,
``RAdamScheduleFree``).

Reference: Defazio et al., 2024, "The Road Less Scheduled" (arXiv:2405.15682).

Schedule-Free replaces the lr schedule's decay by an average of the iterates.
It keeps three points: ``z`` (the base optimizer's iterate), ``x`` (the
running average of ``z``, weighted by ``c_{t+1}``) and ``y = (1 - beta1) z +
beta1 x``, where the gradient is taken. In train mode the reference's model
holds ``y`` and the optimizer holds ``z``; ``optimizer.eval()`` moves the model
to ``x``. Here the params are ``y`` throughout training (take gradients at the
params, as with any optimizer) and :func:`schedule_free_eval_params` returns
``x`` from the state: evaluate and checkpoint-for-inference at that point.

Each step, with ``lr_t`` the scheduled lr (warmup ``min(1, (t+1)/warmup_steps)``
for AdamW and SGD, RAdam's rectification for RAdam), ``lr_max`` its running
maximum, weight ``w_t = (t+1)^r lr_max^p`` and ``c_{t+1} = w_t / sum w``::

    d = direction(g) + wd * y                   # Adam-normalized, or the raw gradient
    y <- lerp(y, z, c_{t+1}) + lr_t (beta1 (1 - c_{t+1}) - 1) d
    z <- z - lr_t d

A model with BatchNorm must recompute its batch statistics at ``x`` before
evaluating (run a few training batches through the model at
``schedule_free_eval_params(...)`` in train mode, without stepping), as the
reference's README says for torch: the statistics gathered at ``y`` do not
belong to ``x``.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib  # noqa: F401  (the benchmark's optax counterparts)

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import compute_dtype, rectification, sma_length, torch_lerp_rounded_weight
from ._registry import OptimInfo
from ._schedule_free_step import ScheduleFreeState, _scale_by_schedule_free

__all__ = ['sfadamw', 'sfsgd', 'sfradam', 'schedule_free_eval_params', 'ScheduleFreeState']


def _check_common(learning_rate, weight_decay, r, weight_lr_power, nu_dtype):
    check_lr(learning_rate)
    check_weight_decay(weight_decay)
    check_range('r', r, 0.0)
    check_range('weight_lr_power', weight_lr_power, 0.0)
    return resolve_dtype('nu_dtype', nu_dtype)


def _check_beta1(name: str, value: Any) -> None:
    # the evaluation point x = y + (1 - 1/beta1)(z - y) needs beta1 > 0
    check_range(name, value, 0.0, 1.0, lo_open=True, hi_open=True)


def _warmup(warmup_steps: Any):
    """The reference's linear warmup ``min(1, t / warmup_steps)`` at 1-based step ``t`` (none for 0; the count
    may be traced under ``optax.inject_hyperparams``)."""

    def factor(t):
        if isinstance(warmup_steps, int) and warmup_steps == 0:
            return jnp.float32(1.0), True
        w = jnp.asarray(warmup_steps, jnp.float32)
        return jnp.where(w > 0, jnp.minimum(t / jnp.maximum(w, 1.0), 1.0), 1.0), True

    return factor


def sfadamw(
    learning_rate: Any = 0.0025,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    *,
    lr_scale: Any = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Schedule-Free AdamW (``schedulefree.AdamWScheduleFree``): Adam's normalized gradient, averaged iterates.

    Args:
        learning_rate, betas, lr_scale, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`); ``betas[0]``
            is the interpolation :math:`\beta_1` between ``z`` and ``x``, in (0, 1).
        eps: added to the bias-corrected root second moment.
        weight_decay: added to the normalized gradient as ``wd * y`` (float or per-leaf tree).
        warmup_steps: linear warmup of the lr over this many steps (instead of a schedule).
        r: polynomial weighting ``(t+1)^r`` of the average.
        weight_lr_power: the average's weights are ``lr_max ** weight_lr_power``.

    The params are the gradient point ``y``; evaluate at :func:`schedule_free_eval_params`. See the module
    docstring for the step.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> params = {'w': jnp.ones(3)}
        >>> tx = jt.optim.sfadamw(2.5e-3, warmup_steps=100)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones(3)}, state, params)
        >>> eval_params = jt.optim.schedule_free_eval_params(state, params)
    """
    nu_dtype = _check_common(learning_rate, weight_decay, r, weight_lr_power, nu_dtype)
    check_betas(betas)
    _check_beta1('betas[0]', betas[0])
    check_range('eps', eps, 0.0)
    check_range('warmup_steps', warmup_steps, 0, integer=True)
    return optax.with_extra_args_support(
        _scale_by_schedule_free(
            learning_rate,
            betas[0],
            betas[1],
            eps,
            weight_decay,
            _warmup(warmup_steps),
            r,
            weight_lr_power,
            lr_scale,
            True,
            nu_dtype,
        )
    )


def sfsgd(
    learning_rate: Any = 1.0,
    momentum: float = 0.9,
    weight_decay: Any = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    *,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Schedule-Free SGD (``schedulefree.SGDScheduleFree``): SGD steps on ``z``, averaged iterates.

    Args:
        learning_rate, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        momentum: the interpolation :math:`\beta` between ``z`` and ``x``, in (0, 1) (the reference's range).
        weight_decay, warmup_steps, r, weight_lr_power: as for :func:`sfadamw`.
    """
    _check_common(learning_rate, weight_decay, r, weight_lr_power, None)
    _check_beta1('momentum', momentum)
    check_range('warmup_steps', warmup_steps, 0, integer=True)
    return optax.with_extra_args_support(
        _scale_by_schedule_free(
            learning_rate,
            momentum,
            None,
            None,
            weight_decay,
            _warmup(warmup_steps),
            r,
            weight_lr_power,
            lr_scale,
            False,
            None,
        )
    )


def sfradam(
    learning_rate: Any = 0.0025,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    silent_sgd_phase: bool = True,
    *,
    lr_scale: Any = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Schedule-Free RAdam (``schedulefree.RAdamScheduleFree``): RAdam's rectification instead of a warmup.

    While RAdam's :math:`\rho_t \le 4` the step is the raw gradient's with lr 0 (``silent_sgd_phase``, the
    default: nothing moves and the steps do not count in the average) or the full lr; after it, Adam's
    normalized gradient with the lr scaled by the rectification :math:`r_t`.

    Args:
        learning_rate, betas, eps, weight_decay, r, weight_lr_power, lr_scale, nu_dtype: as for :func:`sfadamw`.
        silent_sgd_phase: take no step while the rectification is undefined.
    """
    nu_dtype = _check_common(learning_rate, weight_decay, r, weight_lr_power, nu_dtype)
    check_betas(betas)
    _check_beta1('betas[0]', betas[0])
    check_range('eps', eps, 0.0)
    check_bool('silent_sgd_phase', silent_sgd_phase)
    beta2 = betas[1]

    def factor(t):
        rho_t = sma_length(t, beta2)
        adaptive = rho_t > 4.0
        return jnp.where(adaptive, rectification(rho_t, beta2), 0.0 if silent_sgd_phase else 1.0), adaptive

    return optax.with_extra_args_support(
        _scale_by_schedule_free(
            learning_rate, betas[0], beta2, eps, weight_decay, factor, r, weight_lr_power, lr_scale, True, nu_dtype
        )
    )


def schedule_free_eval_params(opt_state: Any, params: Any) -> Any:
    r"""The point to evaluate a Schedule-Free run at: :math:`x = y + (1 - 1/\beta_1)(z - y)` (the reference's
    ``optimizer.eval()``), from the state of :func:`sfadamw` / :func:`sfsgd` / :func:`sfradam` (anywhere inside
    ``opt_state``: the factory's, a chain's, ``MultiSteps``'s) and the training params ``y``.

    Raises ``ValueError`` when ``opt_state`` holds no Schedule-Free state, or holds several (the factory's
    per-group states: evaluate each group's leaves with its own state).
    """
    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, ScheduleFreeState))
        if isinstance(s, ScheduleFreeState)
    ]
    if len(found) != 1:
        raise ValueError(
            f'Invalid opt_state: it holds {len(found)} Schedule-Free states, expected exactly one '
            '(the state of sfadamw, sfsgd or sfradam)'
        )
    state = found[0]
    weight = 1.0 - 1.0 / state.momentum

    def leaf(y, z):
        cdt = compute_dtype(y.dtype)
        return torch_lerp_rounded_weight(y.astype(cdt), z.astype(cdt), weight.astype(cdt)).astype(y.dtype)

    return jax.tree.map(leaf, params, state.z)


_record = functools.partial(
    OptimInfo, source='schedulefree 1.4.1', packing='packed', default_lr=2.5e-3, eval_params=schedule_free_eval_params
)

OPTIMIZERS = (
    _record(
        name='sfadamw',
        alias=sfadamw,
        timm_class='schedulefree.AdamWScheduleFree',
        has_betas=True,
        description='Schedule-Free AdamW (no lr schedule: averaged iterates)',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.contrib.schedule_free_adamw(lr, weight_decay=wd),
        state_dtypes={'nu_dtype': ('exp_avg_sq',)},
    ),
    _record(
        name='sfsgd',
        alias=sfsgd,
        timm_class='schedulefree.SGDScheduleFree',
        has_eps=False,
        has_momentum=True,
        default_lr=0.1,
        complex_params=True,
        description='Schedule-Free SGD (no lr schedule: averaged iterates)',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.contrib.schedule_free_sgd(lr, weight_decay=wd),
    ),
    _record(
        name='sfradam',
        alias=sfradam,
        timm_class='schedulefree.RAdamScheduleFree',
        has_betas=True,
        default_lr=0.03,
        description='Schedule-Free RAdam (no warmup, no lr schedule)',
        state_dtypes={'nu_dtype': ('exp_avg_sq',)},
    ),
)
