"""``torch.optim.Adamax`` as timm registers it (``adamax``).

Reference: Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization"
(arXiv:1412.6980, Adam's infinity-norm variant). Weight decay is torch's L2,
added to the gradient before the direction.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import resolve_dtype
from ..transforms import adam_args, add_l2_weight_decay, negate_if, one_minus_pow, safe_increment
from ..transforms import scale_by_learning_rate, tree_zeros_like, upcast
from ._registry import OptimInfo

__all__ = ['adamax']


class ScaleByAdamaxState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_inf: Any


def scale_by_adamax(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    r"""Adamax's direction ``(m / (1 - b1^t)) / u`` with ``u <- max(b2 * u, |g| + eps)``.

    The math of ``optax.scale_by_adamax`` and of torch, rewritten because
    optax raises ``b1 ** count`` with the int32 count, which fails under
    strict dtype promotion; the bias correction here is computed in float32.
    ``mu_dtype`` / ``nu_dtype`` set the dtypes of ``exp_avg`` / ``exp_inf``
    (default: :func:`jaxopt_timm.transforms.state_dtype` of each leaf).
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByAdamaxState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_inf=tree_zeros_like(params, nu_dtype),
        )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        bc1 = one_minus_pow(b1, count.astype(jnp.float32))
        mu = jax.tree.map(
            lambda g, m: (upcast(m) + (1.0 - b1) * (upcast(g) - upcast(m))).astype(m.dtype), updates, state.exp_avg
        )
        u = jax.tree.map(
            lambda g, n: jnp.maximum(b2 * upcast(n), jnp.abs(upcast(g)) + eps).astype(n.dtype), updates, state.exp_inf
        )
        out = jax.tree.map(lambda g, m, n: ((upcast(m) / bc1) / upcast(n)).astype(g.dtype), updates, mu, u)
        return out, ScaleByAdamaxState(count=count, exp_avg=mu, exp_inf=u)

    return optax.GradientTransformation(init_fn, update_fn)


def adamax(
    learning_rate: Any = 2e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.Adamax``: Adam with the infinity norm in place of the second moment.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{u_t}

    :math:`\epsilon` is added to :math:`|g_t|` inside the maximum, as torch
    (and ``optax.scale_by_adamax``) do; see :func:`scale_by_adamax`.

    Args:
        learning_rate, betas, maximize, lr_scale, mu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to :math:`|g_t|` inside the running maximum.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        nu_dtype: dtype of the second moment, the infinity norm :math:`u_t` (default: the params' dtype;
            float32 for float16 params).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adamax(2e-3)
    """
    mu_dtype, nu_dtype = adam_args(learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype, maximize=maximize)
    return optax.chain(
        negate_if(maximize),
        add_l2_weight_decay(weight_decay),
        scale_by_adamax(betas[0], betas[1], eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


OPTIMIZERS = (
    OptimInfo(
        name='adamax',
        alias=adamax,
        timm_class='torch.optim.Adamax',
        description='torch.optim.Adamax, Adam with infinity norm for more stable updates',
        has_betas=True,
        packing='packed',
        complex_params=True,
        state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_inf',)},
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.adamax(lr)),
    ),
)
