"""AdamP: Adam with the update projected off scale-invariant weights (timm ``AdamP``).

Names: ``adamp`` and ``cadamp`` (plain + spherical caution). References: Heo et
al., 2021, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights" (arXiv:2006.08217); Liang et al., 2024, "Cautious
Optimizers" (arXiv:2411.16085); Spherical Cautious Optimizers
(https://openreview.net/forum?id=OyT2CJ4fh7).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_range
from ..transforms import adam_args, leaf_lrs, leaf_values, moments_init, pow_bias_correction, require_params
from ..transforms import safe_increment, tree_project_tangent, upcast
from ._registry import OptimInfo

__all__ = ['adamp']


class ScaleByAdamPState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any


def scale_by_adamp(
    learning_rate: Any,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: Any,
    delta: float,
    wd_ratio: float,
    nesterov: bool,
    caution: bool,
    lr_scale: Any = None,
    *,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """The whole AdamP step (direction, projection, lr and weight decay) as one transform.

    The decay multiplier depends on the projection's outcome for each leaf
    (``wd_ratio`` when projected), so decay and direction cannot be split into
    separate transforms of a chain without passing that tree between them.
    The moments live in ``mu_dtype`` / ``nu_dtype`` (default: the package's
    state policy); the step, projection included, is computed in float32 for
    low-precision leaves and returned in the gradient's dtype.
    """
    init_fn = moments_init(ScaleByAdamPState, mu_dtype, nu_dtype)

    def update_fn(grads, state, params=None):
        require_params(params, 'adamp')
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        bc1, bc2_sqrt = pow_bias_correction(b1, t), jnp.sqrt(pow_bias_correction(b2, t))
        # low-precision leaves are computed in float32 (``compute_dtype``) and the moments stored back
        grads_c = jax.tree.map(upcast, grads)
        params_c = jax.tree.map(lambda p, g: p.astype(g.dtype), params, grads_c)
        mu = jax.tree.map(
            lambda g, m: (b1 * m.astype(g.dtype) + (1.0 - b1) * g).astype(m.dtype), grads_c, state.exp_avg
        )
        nu = jax.tree.map(
            lambda g, v: (b2 * v.astype(g.dtype) + (1.0 - b2) * g * g).astype(v.dtype), grads_c, state.exp_avg_sq
        )
        denom = jax.tree.map(lambda g, v: jnp.sqrt(v.astype(g.dtype)) / bc2_sqrt.astype(g.dtype) + eps, grads_c, nu)
        if nesterov:
            perturb = jax.tree.map(lambda m, g, d: (b1 * m.astype(g.dtype) + (1.0 - b1) * g) / d, mu, grads_c, denom)
        else:
            perturb = jax.tree.map(lambda m, g, d: m.astype(g.dtype) / d, mu, grads_c, denom)
        perturb, wd_factor = tree_project_tangent(params_c, grads_c, perturb, delta, wd_ratio, eps, caution)
        lrs = leaf_lrs(learning_rate, state.count, lr_scale, grads)
        wds = leaf_values(weight_decay, grads)

        def step(u, p, lr, wd, r, g):
            out = -(lr / bc1).astype(u.dtype) * u
            if isinstance(wd, jax.core.Tracer) or wd > 0:  # timm: `if group['weight_decay'] > 0`, per group
                out = out - (lr * wd).astype(p.dtype) * r * p
            return out.astype(g.dtype)

        updates = jax.tree.map(step, perturb, params_c, lrs, wds, wd_factor, grads)
        return updates, ScaleByAdamPState(count=count, exp_avg=mu, exp_avg_sq=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adamp(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    nesterov: bool = False,
    caution: bool = False,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``AdamP``: Adam whose update is projected onto the tangent space of scale-invariant weights.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        u_t &= \frac{m_t \text{ (or } \beta_1 m_t + (1-\beta_1) g_t \text{ if nesterov)}}
                   {\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon} \\
        u_t &\leftarrow u_t - \hat p\,\langle \hat p, u_t\rangle, \ r = \text{wd\_ratio}
            \quad \text{if } \max|\cos(g_t, \theta)| < \delta / \sqrt{\dim} \text{ (else } r = 1) \\
        \theta_t &= \theta_{t-1}(1 - \eta\lambda r) - \frac{\eta}{1-\beta_1^t} u_t

    The cosine test and projection use per-output-channel rows first, then
    the whole tensor (see :mod:`jaxopt_timm.transforms._projection`); leaves
    with ``ndim <= 1`` are never projected. Weight decay is decoupled (as
    AdamW), scaled by ``wd_ratio`` on projected leaves, and only applied where
    ``weight_decay > 0``.

    Args:
        learning_rate, betas, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: denominator term; also the norm clamp in the cosine test and projection.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        delta: threshold of the cosine test (``delta / sqrt(row width)``), >= 0.
        wd_ratio: weight-decay multiplier for projected leaves, >= 0.
        nesterov: Nesterov-style first moment in the direction.
        caution: cautious mask (spherical for projected leaves), as timm's ``cadamp``.
        mu_dtype: dtype of the first moment ``exp_avg`` (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment ``exp_avg_sq`` (default: the params' dtype; float32 for float16
            params).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adamp(1e-3, weight_decay=1e-2, nesterov=True)

    Note:
        timm's registry binds ``wd_ratio=0.01`` and ``nesterov=True`` for
        ``adamp``; the class (and this alias) default to 0.1 and False.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype, nesterov=nesterov, caution=caution
    )
    check_range('delta', delta, 0.0)
    check_range('wd_ratio', wd_ratio, 0.0)
    return optax.with_extra_args_support(
        scale_by_adamp(
            learning_rate,
            betas[0],
            betas[1],
            eps,
            weight_decay,
            delta,
            wd_ratio,
            nesterov,
            caution,
            lr_scale,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        )
    )


_record = functools.partial(
    OptimInfo,
    alias=adamp,
    timm_class='timm.optim.AdamP',
    has_betas=True,
    packing='stacked',
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    _record(
        name='adamp',
        description='Adam with built-in projection to unit norm sphere',
        defaults={'wd_ratio': 0.01, 'nesterov': True},
    ),
    _record(
        name='cadamp',
        description='Add the spherical cautious optimizer and the standard cautious optimizer to AdamP',
        defaults={'wd_ratio': 0.01, 'nesterov': True, 'caution': True},
    ),
)
