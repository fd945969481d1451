"""The ``torch.optim`` classes timm registers as they are: Adam, Adamax, Adadelta, Adagrad and RMSprop.

References: Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization"
(arXiv:1412.6980; Adam and its infinity-norm variant Adamax); Reddi et al.,
2018, "On the Convergence of Adam and Beyond" (amsgrad); Zeiler, 2012,
"ADADELTA: An Adaptive Learning Rate Method" (arXiv:1212.5701); Duchi et al.,
2011, "Adaptive Subgradient Methods for Online Learning and Stochastic
Optimization" (JMLR 12); Hinton, 2012, Coursera lecture 6e (RMSprop) and
Graves, 2013, "Generating Sequences With Recurrent Neural Networks"
(arXiv:1308.0850, the centered variant).

Weight decay is torch's: L2, added to the gradient before the direction
(Adam may decouple it with ``decoupled_weight_decay``, as torch allows).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import (
    add_decoupled_weight_decay, add_l2_weight_decay, cpu_fence, l2_leaf, leaf_values, one_minus_pow, safe_increment,
    scale_by_adam, scale_by_learning_rate, state_dtype, tree_any_nonzero, tree_zeros_like, upcast, with_state_dtype,
)
from ._registry import OptimInfo

__all__ = ['adam', 'adamax', 'adadelta', 'adagrad', 'rmsprop']


def _maybe_negate(maximize: bool) -> optax.GradientTransformation:
    return optax.scale(-1.0) if maximize else optax.identity()


def _is_off(value: Any) -> bool:
    """A switch-like numeric hyperparameter known at construction to be zero (a tracer counts as on)."""
    return not isinstance(value, jax.core.Tracer) and value == 0


def adam(
        learning_rate: Any = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        lr_scale: Any = None,
        mu_dtype: Optional[Any] = None,
        nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.Adam``: Adam with L2 weight decay (torch's default) and optional amsgrad.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1}
            - \eta \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    With ``amsgrad`` the running maximum of the raw :math:`v_t` replaces
    :math:`v_t` (torch's convention, see
    :func:`jaxopt_timm.transforms.scale_by_adam`). With
    ``decoupled_weight_decay`` the decay is AdamW's
    :math:`\theta \mathrel{*}= 1 - \eta\lambda` instead.

    Args:
        learning_rate: float or schedule ``step -> lr``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: added to the bias-corrected root second moment.
        weight_decay: :math:`\lambda` (float or per-leaf tree), L2 unless decoupled.
        amsgrad: use the running maximum of the second moment.
        maximize: ascend instead of descend.
        decoupled_weight_decay: AdamW-style decay (torch's Adam flag of the same name).
        lr_scale: per-leaf lr multipliers (layer decay).
        mu_dtype: dtype of the first moment (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment (default: the params' dtype; float32 for float16 params).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.adam(1e-3, weight_decay=1e-4, amsgrad=True)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)
    """
    check_lr(learning_rate)
    check_betas(betas)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    for name, value in (('amsgrad', amsgrad), ('maximize', maximize),
                        ('decoupled_weight_decay', decoupled_weight_decay)):
        check_bool(name, value)
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    return optax.chain(
        _maybe_negate(maximize),
        optax.identity() if decoupled_weight_decay else add_l2_weight_decay(weight_decay),
        scale_by_adam(betas[0], betas[1], eps, amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale) if decoupled_weight_decay
        else optax.identity(),
    )


class ScaleByAdamaxState(NamedTuple):
    count: jax.Array
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
            count=jnp.zeros([], jnp.int32), exp_avg=tree_zeros_like(params, mu_dtype),
            exp_inf=tree_zeros_like(params, nu_dtype))

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        bc1 = one_minus_pow(b1, count.astype(jnp.float32))
        mu = jax.tree.map(
            lambda g, m: (upcast(m) + (1.0 - b1) * (upcast(g) - upcast(m))).astype(m.dtype), updates, state.exp_avg)
        u = jax.tree.map(
            lambda g, n: jnp.maximum(b2 * upcast(n), jnp.abs(upcast(g)) + eps).astype(n.dtype), updates,
            state.exp_inf)
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
        learning_rate: float or schedule ``step -> lr``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: added to :math:`|g_t|` inside the running maximum.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        maximize: ascend instead of descend.
        lr_scale: per-leaf lr multipliers (layer decay).
        mu_dtype: dtype of the first moment (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment, the infinity norm :math:`u_t` (default: the params' dtype;
            float32 for float16 params).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.adamax(2e-3)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)
    """
    check_lr(learning_rate)
    check_betas(betas)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    check_bool('maximize', maximize)
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    return optax.chain(
        _maybe_negate(maximize),
        add_l2_weight_decay(weight_decay),
        scale_by_adamax(betas[0], betas[1], eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


def adadelta(
        learning_rate: Any = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: Any = 0.0,
        *,
        maximize: bool = False,
        lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.Adadelta``: step sizes from running windows of squared gradients and squared steps.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1} \\
        v_t &= \rho v_{t-1} + (1-\rho) g_t^2, \quad
            \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}} g_t, \quad
            u_t = \rho u_{t-1} + (1-\rho)\Delta_t^2 \\
        \theta_t &= \theta_{t-1} - \eta\Delta_t

    The direction is ``optax.scale_by_adadelta``, whose math is torch's, run
    by :func:`jaxopt_timm.transforms.with_state_dtype` so its state follows the
    package's dtype policy (float32 for float16 params).

    Args:
        learning_rate: float or schedule ``step -> lr`` (torch's default 1.0, the paper's lr-free form).
        rho: decay :math:`\rho` of both running averages, in [0, 1].
        eps: added inside both square roots.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        maximize: ascend instead of descend.
        lr_scale: per-leaf lr multipliers (layer decay).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.adadelta(1.0, rho=0.9)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)
    """
    check_lr(learning_rate)
    check_range('rho', rho, 0.0, 1.0)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    check_bool('maximize', maximize)
    return optax.chain(
        _maybe_negate(maximize),
        add_l2_weight_decay(weight_decay),
        with_state_dtype(optax.scale_by_adadelta(rho, eps)),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


class ScaleByTorchAdagradState(NamedTuple):
    count: jax.Array
    sum: Any


def scale_by_torch_adagrad(
        lr_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    r"""torch's Adagrad direction: ``g / (sqrt(s) + eps) / (1 + (t-1) * lr_decay)`` with ``s += g^2``.

    ``optax.scale_by_rss`` puts :math:`\epsilon` inside the square root and
    has no ``lr_decay``, so it differs from torch; this primitive follows
    torch (``s`` starts at ``initial_accumulator_value``, :math:`t` counts
    from 1). The lr decay divides the step, so folding it into the direction
    leaves the later ``-lr`` multiply unchanged. ``weight_decay`` (float or
    per-leaf tree) folds torch's L2 term in (``g <- g + wd*p``): the direction
    recomputes it after the sum is stored rather than sharing it, which
    XLA:CPU (no multi-output fusion) would write to a full-size temporary.
    """

    def init_fn(params):
        return ScaleByTorchAdagradState(
            count=jnp.zeros([], jnp.int32),
            sum=jax.tree.map(
                lambda p: jnp.full(p.shape, initial_accumulator_value, state_dtype(p.dtype)), params))

    def update_fn(updates, state, params=None):
        l2 = tree_any_nonzero(weight_decay)
        if l2 and params is None:
            raise ValueError('scale_by_torch_adagrad with weight_decay needs params: call update(grads, state, params)')
        wds = leaf_values(weight_decay, updates)
        ps = params if l2 else jax.tree.map(lambda _: None, updates)

        def grad(g, p, wd):  # add_l2_weight_decay's sum, in the gradient's dtype
            return upcast(l2_leaf(g, p, wd) if l2 else g)

        decay = 1.0 + state.count.astype(jnp.float32) * jnp.asarray(lr_decay, jnp.float32)
        none_leaf = lambda x: x is None  # noqa: E731
        sums = jax.tree.map(
            lambda g, s, p, wd: None if g is None else (upcast(s) + grad(g, p, wd) ** 2).astype(s.dtype),
            updates, state.sum, ps, wds, is_leaf=none_leaf)
        if l2:
            sums, updates, ps = cpu_fence((sums, updates, ps))  # the sum is stored before g + wd*p is recomputed
        out = jax.tree.map(
            lambda g, s, p, wd: None if g is None else (grad(g, p, wd) / (jnp.sqrt(upcast(s)) + eps) / decay).astype(
                g.dtype),
            updates, sums, ps, wds, is_leaf=none_leaf)
        return out, ScaleByTorchAdagradState(count=safe_increment(state.count), sum=sums)

    return optax.GradientTransformation(init_fn, update_fn)


def adagrad(
        learning_rate: Any = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: Any = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.Adagrad``: per-coordinate steps scaled by the root of the summed squared gradients.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \quad s_t = s_{t-1} + g_t^2 \quad (s_0 = s_{init}) \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 + (t-1)\,\delta} \frac{g_t}{\sqrt{s_t} + \epsilon}

    Args:
        learning_rate: float or schedule ``step -> lr``.
        lr_decay: :math:`\delta`, the lr's inverse-time decay per step, >= 0.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        initial_accumulator_value: :math:`s_{init}`, >= 0.
        eps: added to the root of the sum (timm's registry binds 1e-8; torch's default is 1e-10).
        maximize: ascend instead of descend.
        lr_scale: per-leaf lr multipliers (layer decay).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.adagrad(1e-2, lr_decay=1e-3, initial_accumulator_value=0.1)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)
    """
    check_lr(learning_rate)
    check_range('lr_decay', lr_decay, 0.0)
    check_weight_decay(weight_decay)
    check_range('initial_accumulator_value', initial_accumulator_value, 0.0)
    check_range('eps', eps, 0.0)
    check_bool('maximize', maximize)
    return optax.chain(
        _maybe_negate(maximize),
        scale_by_torch_adagrad(lr_decay, initial_accumulator_value, eps, weight_decay=weight_decay),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


def rmsprop(
        learning_rate: Any = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: Any = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.RMSprop``: gradients divided by a running root mean square, optional momentum.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \quad v_t = \alpha v_{t-1} + (1-\alpha) g_t^2 \\
        d_t &= \frac{g_t}{\sqrt{v_t - \bar g_t^2} + \epsilon} \text{ (centered, }
            \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t \text{) else } \frac{g_t}{\sqrt{v_t} + \epsilon} \\
        b_t &= \mu b_{t-1} + d_t \quad (b_0 = 0), \qquad \theta_t = \theta_{t-1} - \eta\, b_t

    Unlike timm's ``RMSpropTF`` (``rmsproptf``), :math:`\epsilon` is outside
    the root, the average starts at zero and the lr stays out of the momentum
    buffer, so the direction is optax's ``scale_by_rms`` /
    ``scale_by_stddev`` with ``eps_in_sqrt=False`` followed by ``trace``, run
    by :func:`jaxopt_timm.transforms.with_state_dtype` (float32 state for
    float16 params).

    Args:
        learning_rate: float or schedule ``step -> lr``.
        alpha: smoothing constant :math:`\alpha` (timm's registry binds 0.9; torch's default is 0.99), >= 0.
        eps: added to the root mean square.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        momentum: momentum factor :math:`\mu` (timm's factory defaults it to 0.9), >= 0.
        centered: normalise by the estimated variance instead of the raw second moment.
        maximize: ascend instead of descend.
        lr_scale: per-leaf lr multipliers (layer decay).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.rmsprop(1e-2, alpha=0.9, momentum=0.9, centered=True)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)
    """
    check_lr(learning_rate)
    check_range('alpha', alpha, 0.0)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    check_range('momentum', momentum, 0.0)
    check_bool('centered', centered)
    check_bool('maximize', maximize)
    if centered:
        direction = optax.scale_by_stddev(decay=alpha, eps=eps, eps_in_sqrt=False)
    else:
        direction = optax.scale_by_rms(decay=alpha, eps=eps, eps_in_sqrt=False)
    if not _is_off(momentum):
        direction = optax.chain(direction, optax.trace(decay=momentum))
    return optax.chain(
        _maybe_negate(maximize),
        add_l2_weight_decay(weight_decay),
        with_state_dtype(direction),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


OPTIMIZERS = (
    OptimInfo(
        name='adam', alias=adam, timm_class='torch.optim.Adam',
        description='torch.optim.Adam, Adaptive Moment Estimation', has_betas=True,
        packing='packed', benchmarked=True, torch_fused=True,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))),
    OptimInfo(
        name='adamax', alias=adamax, timm_class='torch.optim.Adamax',
        description='torch.optim.Adamax, Adam with infinity norm for more stable updates', has_betas=True,
        packing='packed',
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.adamax(lr))),
    OptimInfo(
        name='adadelta', alias=adadelta, timm_class='torch.optim.Adadelta',
        description='torch.optim.Adadelta, Adapts learning rates based on running windows of gradients',
        packing='packed', default_lr=1.0,
        optax_equivalent=lambda lr, wd: optax.adadelta(lr, weight_decay=wd)),
    OptimInfo(
        name='adagrad', alias=adagrad, timm_class='torch.optim.Adagrad',
        description='torch.optim.Adagrad, Adapts learning rates using cumulative squared gradients',
        defaults={'eps': 1e-8},
        packing='packed', default_lr=0.01,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.adagrad(lr))),
    OptimInfo(
        name='rmsprop', alias=rmsprop, timm_class='torch.optim.RMSprop',
        description='torch.optim.RMSprop, Root Mean Square Propagation', has_momentum=True,
        defaults={'alpha': 0.9},
        packing='packed',
        optax_equivalent=lambda lr, wd: (
            optax.chain(optax.add_decayed_weights(wd), optax.rmsprop(lr, decay=0.9, momentum=0.9)))),
)
