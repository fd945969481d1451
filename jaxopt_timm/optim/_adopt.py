"""ADOPT: timm's ``Adopt`` (``adopt``, ``adoptw``, ``cadopt``, ``cadoptw``, ``adoptc``, ``cadoptc``).

Reference: Taniguchi et al., 2024, "ADOPT: Modified Adam Can Converge with Any
beta2 with the Optimal Rate" (arXiv:2411.02853); caution from Liang et al.,
2024 (arXiv:2411.16085); corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_range
from ..transforms import adam_args, add_decoupled_weight_decay, add_l2_weight_decay, cautious, cpu_fence, folded_l2
from ..transforms import lr_at, moments_init, negate_if, resolve_max_lr, safe_increment, scale_by_learning_rate
from ..transforms import torch_lerp, upcast
from ._registry import OptimInfo

__all__ = ['adopt']


class ScaleByAdoptState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any


def scale_by_adopt(
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    clip_exp: Optional[float] = 0.333,
    *,
    weight_decay: Any = 0.0,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """ADOPT's direction: normalise by the *previous* second moment, then take the momentum.

    Step 1 only seeds ``v <- g^2`` and outputs the untouched ``m`` (init's zeros). Later steps:
    ``n = g / max(sqrt(v), eps)``, clipped to ``+-(t-1)**clip_exp`` (timm's
    stabilising clip; none when ``clip_exp`` is None), ``m <- lerp(m, n, 1-b1)``,
    output ``m``, then ``v <- b2*v + (1-b2)*g^2``. optax has no ADOPT.

    ``weight_decay`` (float or per-leaf tree) folds timm's L2 term in
    (``g <- g + wd*p`` before both moments): the second moment recomputes it
    after the first moment is stored instead of sharing the sum, which
    XLA:CPU (no multi-output fusion) would write to a full-size temporary.
    ``m`` is kept in ``mu_dtype`` and ``v`` in ``nu_dtype`` (default: the
    params' dtype, float32 for float16 params); low-precision leaves are
    computed in float32 and the output has the gradient's dtype.
    """
    init_fn = moments_init(ScaleByAdoptState, mu_dtype, nu_dtype)

    def update_fn(updates, state, params=None):
        l2 = folded_l2(weight_decay, updates, params, 'scale_by_adopt with weight_decay')
        first = state.count == 0
        count = safe_increment(state.count)
        clip = None if clip_exp is None else (count.astype(jnp.float32) - 1.0) ** jnp.float32(clip_exp)
        wds, ps = l2.wds, l2.params

        def grad(g_in, p, wd):
            return l2.grad(upcast(g_in), p, wd)  # float32 for low-precision leaves

        def first_moment(g_in, m_in, v_in, p, wd):
            if g_in is None:
                return None
            g = grad(g_in, p, wd)
            cdt = g.dtype
            normed = g / jnp.maximum(jnp.sqrt(v_in.astype(cdt)), jnp.asarray(eps, cdt))
            if clip is not None:
                c = clip.astype(cdt)
                normed = jnp.clip(normed, -c, c)
            m_new = torch_lerp(m_in.astype(cdt), normed, 1.0 - b1).astype(m_in.dtype)
            return jnp.where(first, m_in, m_new)

        def second_moment(g_in, v_in, p, wd):
            if g_in is None:
                return None
            g = grad(g_in, p, wd)
            v = v_in.astype(g.dtype)
            return jnp.where(first, v + g * g, v * b2 + (1.0 - b2) * g * g).astype(v_in.dtype)

        none_leaf = lambda x: x is None  # noqa: E731
        mu = jax.tree.map(first_moment, updates, state.exp_avg, state.exp_avg_sq, ps, wds, is_leaf=none_leaf)
        # m is stored before v overwrites the v it was normalised by, and the step reads the stored m
        mu, g_again, v_again, p_again = cpu_fence((mu, updates, state.exp_avg_sq, ps))
        nu = jax.tree.map(second_moment, g_again, v_again, p_again, wds, is_leaf=none_leaf)
        # the first step's direction is the stored m, which that step leaves at init's zeros: no select needed
        out = jax.tree.map(lambda g, m: m.astype(g.dtype), updates, mu)
        return out, ScaleByAdoptState(count=count, exp_avg=mu, exp_avg_sq=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def _skip_first_step(learning_rate: Any):
    """The lr as a schedule that is 0 on the first update (ADOPT's seeding step moves nothing, decay included)."""

    def schedule(count):
        return jnp.where(count == 0, jnp.float32(0.0), lr_at(learning_rate, count))

    return schedule


def adopt(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.9999),
    eps: float = 1e-6,
    clip_exp: Optional[float] = 0.333,
    weight_decay: Any = 0.0,
    decoupled: bool = False,
    corrected_weight_decay: bool = False,
    *,
    caution: bool = False,
    maximize: bool = False,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Adopt``: Adam with the second moment lagged by one step, so any :math:`\beta_2` converges.

    .. math::
        v_1 &= g_1^2 \quad (\text{no parameter update on step 1}) \\
        n_t &= \operatorname{clip}\!\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, \pm (t-1)^{c}\right) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) n_t \\
        \theta_t &= \theta_{t-1} - \eta_t m_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    with :math:`c` = ``clip_exp``. Weight decay is L2 (added to :math:`g_t`,
    also seen by :math:`v`) unless ``decoupled``, then the params shrink by
    :math:`1 - \eta_t\lambda` (:math:`1 - \lambda\eta_t^2/\eta_{max}` with
    ``corrected_weight_decay``) from step 2 on.

    Args:
        learning_rate, betas, maximize, lr_scale, max_lr: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: floor of the root second moment.
        clip_exp: exponent of the clipping schedule :math:`(t-1)^{c}`; None: no clipping.
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        decoupled: decoupled (AdamW-style) instead of L2 decay.
        corrected_weight_decay: decoupled decay by :math:`\lambda\eta_t^2/\eta_{max}` (needs ``decoupled``).
        caution: mask the momentum where its sign disagrees with the gradient.
        mu_dtype: dtype of the first moment ``exp_avg`` (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment ``exp_avg_sq`` (default: the params' dtype; float32 for float16
            params).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adopt(1e-3, weight_decay=0.05, decoupled=True)

    Notes:
        The clipping schedule is the paper's stabilising variant (its
        Algorithm 2 with :math:`c = 1/3`, timm's 0.333). The first update only
        initialises :math:`v` and leaves the params untouched, as in the paper.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        decoupled=decoupled,
        corrected_weight_decay=corrected_weight_decay,
        caution=caution,
        maximize=maximize,
    )
    check_range('clip_exp', clip_exp, allow_none=True)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled)
    l2 = 0.0 if decoupled else weight_decay
    # the L2 term is folded into the direction, except under caution, whose mask reads the decayed gradient
    direction = scale_by_adopt(
        betas[0], betas[1], eps, clip_exp, weight_decay=0.0 if caution else l2, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    return optax.chain(
        negate_if(maximize),
        add_l2_weight_decay(l2 if caution else 0.0),
        cautious(direction) if caution else direction,
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(
            weight_decay if decoupled else 0.0, _skip_first_step(learning_rate), lr_scale, max_lr
        ),
    )


_record = functools.partial(
    OptimInfo,
    alias=adopt,
    timm_class='timm.optim.Adopt',
    has_betas=True,
    packing='packed',
    complex_params=True,
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    _record(
        name='adopt',
        description='Modified Adam that can converge with any β2 with the optimal rate',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.contrib.adopt(lr)),
    ),
    _record(
        name='adoptw',
        description='Modified AdamW (decoupled decay) that can converge with any β2 with the optimal rate',
        defaults={'decoupled': True},
    ),
    _record(name='cadopt', description='Cautious Adopt', defaults={'caution': True}),
    _record(
        name='cadoptw', description='Cautious AdoptW (decoupled decay)', defaults={'decoupled': True, 'caution': True}
    ),
    _record(
        name='adoptc',
        description='Adopt with corrected decoupled weight decay (lr²/max_lr scaling)',
        defaults={'decoupled': True, 'corrected_weight_decay': True},
    ),
    _record(
        name='cadoptc',
        description='Cautious Adopt with corrected decoupled weight decay (lr²/max_lr scaling)',
        defaults={'decoupled': True, 'caution': True, 'corrected_weight_decay': True},
    ),
)
