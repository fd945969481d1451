"""Lion: timm's ``Lion`` (``lion``, ``clion``, ``lionc``, ``clionc``).

Reference: Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"
(arXiv:2302.06675); caution from Liang et al., 2024, "Cautious Optimizers"
(arXiv:2411.16085); corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import resolve_dtype
from ..transforms import adam_args, decay_chain, resolve_max_lr, safe_increment, tree_zeros_like, upcast
from ._registry import OptimInfo

__all__ = ['lion']


def scale_by_lion(
    b1: float = 0.9,
    b2: float = 0.99,
    *,
    mu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    r"""Lion's direction :math:`\operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t)` (to be multiplied by ``-lr``).

    The momentum then moves to :math:`m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t`.
    This is ``optax.scale_by_lion``'s math (and its ``ScaleByLionState``), but
    optax combines the gradient and the momentum in their own dtypes, which
    fails under strict dtype promotion as soon as they differ (``mu_dtype``
    float32 with bfloat16 params, or the default float32 momentum of float16
    params). Here both are upcast to float32 (wider dtypes stay), the
    momentum is stored back in its state dtype and the direction in the
    gradient's dtype; with everything in float32 the result is optax's bit for bit.

    Args:
        b1: interpolation between momentum and gradient for the direction.
        b2: decay of the momentum.
        mu_dtype: dtype of the momentum (default:
            :func:`jaxopt_timm.transforms.state_dtype` of each leaf).
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)

    def init_fn(params):
        return optax.ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params, mu_dtype))

    def update_fn(updates, state, params=None):
        del params

        def direction(g, m):
            return jnp.sign((1.0 - b1) * upcast(g) + b1 * upcast(m)).astype(g.dtype)

        out = jax.tree.map(direction, updates, state.mu)
        mu = jax.tree.map(lambda g, m: ((1.0 - b2) * upcast(g) + b2 * upcast(m)).astype(m.dtype), updates, state.mu)
        return out, optax.ScaleByLionState(count=safe_increment(state.count), mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


def lion(
    learning_rate: Any = 1e-4,
    betas: Tuple[float, float] = (0.9, 0.99),
    weight_decay: Any = 0.0,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    maximize: bool = False,
    *,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Lion``: the sign of an interpolated momentum, with decoupled weight decay.

    .. math::
        u_t &= \operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t) \\
        \theta_t &= \theta_{t-1}(1 - c_t\lambda) - \eta_t u_t \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2) g_t

    with :math:`c_t = \eta_t` (:math:`\eta_t^2/\eta_{max}` with
    ``corrected_weight_decay``). The direction is :func:`scale_by_lion`,
    ``optax.scale_by_lion``'s math written out because optax's fails under
    strict dtype promotion when the momentum's dtype differs from the
    gradient's; ``caution`` masks :math:`u_t` with
    :func:`jaxopt_timm.transforms.caution_mask` against :math:`g_t`.

    Args:
        learning_rate, betas, maximize, lr_scale, max_lr: as for every alias (see :mod:`jaxopt_timm.optim`).
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        caution: mask update components whose sign disagrees with the gradient.
        corrected_weight_decay: decay by :math:`\lambda\eta_t^2/\eta_{max}`.
        mu_dtype: dtype of the momentum (default: the params' dtype; float32 for float16 params).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.lion(1e-4, weight_decay=1.0)

    Notes:
        The paper recommends an lr 3-10x smaller and a weight decay 3-10x
        larger than AdamW's; timm's defaults (``lr=1e-4``, no decay) are kept.
    """
    mu_dtype, _ = adam_args(
        learning_rate,
        betas,
        None,
        weight_decay,
        mu_dtype,
        caution=caution,
        corrected_weight_decay=corrected_weight_decay,
        maximize=maximize,
    )
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    direction = scale_by_lion(betas[0], betas[1], mu_dtype=mu_dtype)
    return decay_chain(direction, learning_rate, weight_decay, lr_scale, max_lr, maximize=maximize, caution=caution)


_record = functools.partial(
    OptimInfo,
    alias=lion,
    timm_class='timm.optim.Lion',
    has_eps=False,
    has_betas=True,
    packing='packed',
    complex_params=True,
    state_dtypes={'mu_dtype': ('mu',)},
)

OPTIMIZERS = (
    _record(
        name='lion',
        description='Evolved Sign Momentum optimizer for improved convergence',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.lion(lr, weight_decay=wd),
    ),
    _record(name='clion', description='Cautious Lion', defaults={'caution': True}),
    _record(
        name='lionc',
        description='Lion with corrected weight decay (lr²/max_lr scaling)',
        defaults={'corrected_weight_decay': True},
    ),
    _record(
        name='clionc',
        description='Cautious Lion with corrected weight decay (lr²/max_lr scaling)',
        defaults={'caution': True, 'corrected_weight_decay': True},
    ),
)
