"""NAdam: ``torch.optim.NAdam`` (``nadam``) and timm's ``NAdamLegacy`` (``nadamlegacy``).

References: Dozat, 2016, "Incorporating Nesterov Momentum into Adam" (ICLR
2016 workshop; http://cs229.stanford.edu/proj2015/054_report.pdf), with the
momentum warming schedule ``mu_t = beta1 (1 - 0.5 * 0.96^(t * psi))`` of that
report; decoupled decay from Loshchilov & Hutter, 2019 (arXiv:1711.05101).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_range, resolve_dtype
from ..transforms import adam_args, adam_moments, add_l2_weight_decay, decay_chain, one_minus_pow, safe_increment
from ..transforms import scale_by_learning_rate, tree_zeros_like, upcast
from ._registry import OptimInfo

__all__ = ['nadam', 'nadam_legacy']

_LOG_096 = math.log(0.96)


class ScaleByNAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    mu_product: jax.Array
    exp_avg: Any
    exp_avg_sq: Any


def scale_by_nadam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    momentum_decay: float = 4e-3,
    *,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    r"""NAdam's direction with torch's momentum schedule (to be multiplied by ``-lr``).

    .. math::
        \mu_t &= \beta_1 (1 - \tfrac12 0.96^{t\psi}), \quad \Pi_t = \prod_{k\le t} \mu_k \\
        d_t &= \frac{1}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}
            \left(\frac{1-\mu_t}{1-\Pi_t} g_t + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}} m_t\right)

    optax's ``scale_by_adam(nesterov=True)`` uses a constant :math:`\beta_1`
    in place of the warming :math:`\mu_t` schedule and its product, so it is
    a different optimizer. :math:`\Pi_t` is carried in the state in float32,
    as torch keeps ``mu_product``. ``mu_dtype`` / ``nu_dtype`` set the dtypes of
    ``exp_avg`` / ``exp_avg_sq`` (default:
    :func:`jaxopt_timm.transforms.state_dtype` of each leaf).
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByNAdamState(
            count=jnp.zeros([], jnp.int32),
            mu_product=jnp.ones([], jnp.float32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=tree_zeros_like(params, nu_dtype),
        )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        log_decay = jnp.asarray(momentum_decay * _LOG_096, jnp.float32)
        mu_t = b1 * (1.0 - 0.5 * jnp.exp(t * log_decay))
        mu_next = b1 * (1.0 - 0.5 * jnp.exp((t + 1.0) * log_decay))
        mu_product = state.mu_product * mu_t
        grad_coef = (1.0 - mu_t) / (1.0 - mu_product)
        avg_coef = mu_next / (1.0 - mu_product * mu_next)
        bc2 = one_minus_pow(b2, t)

        mu, nu = adam_moments(updates, state.exp_avg, state.exp_avg_sq, b1, b2)

        def direction(g, m, v):
            denom = jnp.sqrt(upcast(v) / bc2) + eps
            return (grad_coef * upcast(g) / denom + avg_coef * upcast(m) / denom).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByNAdamState(count=count, mu_product=mu_product, exp_avg=mu, exp_avg_sq=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def nadam(
    learning_rate: Any = 2e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.NAdam``: Adam with Nesterov momentum and a warming momentum schedule.

    .. math::
        \mu_t &= \beta_1 (1 - \tfrac12 0.96^{t\psi}), \quad \Pi_t = \prod_{k\le t} \mu_k \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}
            \left(\frac{1-\mu_t}{1-\Pi_t} g_t + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}} m_t\right)

    Weight decay is L2 (:math:`g_t \mathrel{+}= \lambda\theta_{t-1}`, also in the
    Nesterov term) or, with ``decoupled_weight_decay``,
    :math:`\theta \mathrel{*}= 1 - \eta\lambda` (NAdamW).

    Args:
        learning_rate, betas, maximize, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the bias-corrected root second moment.
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        momentum_decay: :math:`\psi` of the momentum schedule, >= 0.
        decoupled_weight_decay: AdamW-style decay instead of L2.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.nadam(2e-3, weight_decay=1e-2, decoupled_weight_decay=True)

    Notes:
        The schedule of Dozat's report uses :math:`\psi = 0.004`, torch's default.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        decoupled_weight_decay=decoupled_weight_decay,
        maximize=maximize,
    )
    check_range('momentum_decay', momentum_decay, 0.0)
    direction = scale_by_nadam(betas[0], betas[1], eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return decay_chain(
        direction, learning_rate, weight_decay, lr_scale, maximize=maximize, l2=not decoupled_weight_decay
    )


def nadam_legacy(
    learning_rate: Any = 2e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    schedule_decay: float = 4e-3,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``NAdamLegacy``: the pre-torch NAdam, L2 weight decay only.

    Its update is :func:`nadam`'s with :math:`\psi` = ``schedule_decay`` (the
    same warming schedule, the same product of momenta, the denominator
    :math:`\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon`), so it shares
    :func:`scale_by_nadam`; weight decay is always added to the gradient.

    Args:
        learning_rate, betas, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the bias-corrected root second moment.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        schedule_decay: :math:`\psi` of the momentum schedule, >= 0.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.nadam_legacy(2e-3, schedule_decay=4e-3)
    """
    mu_dtype, nu_dtype = adam_args(learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype)
    check_range('schedule_decay', schedule_decay, 0.0)
    return optax.chain(
        add_l2_weight_decay(weight_decay),
        scale_by_nadam(betas[0], betas[1], eps, schedule_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


_record = functools.partial(
    OptimInfo, has_betas=True, packing='packed', state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)}
)

OPTIMIZERS = (
    _record(
        name='nadam',
        alias=nadam,
        timm_class='torch.optim.NAdam',
        description='torch.optim.NAdam, Adam with Nesterov momentum',
        benchmarked=True,
        complex_params=True,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.nadam(lr)),
    ),
    _record(
        name='nadamlegacy',
        alias=nadam_legacy,
        timm_class='timm.optim.NAdamLegacy',
        description='legacy impl of NAdam that pre-dates inclusion in torch.optim',
    ),
)
