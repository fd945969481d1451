"""AdaHessian: Adam with the squared Hessian diagonal in place of the squared gradient (timm ``Adahessian``).

Name: ``adahessian`` (second order: ``tx.update`` takes ``hvp_fn``). Reference:
Yao et al., 2021, "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine
Learning" (arXiv:2006.00719).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_choice, check_range, resolve_dtype
from ..transforms import adam_args, add_decoupled_weight_decay, compute_dtype, hutchinson_diagonal, hvp_from_loss
from ..transforms import pow_bias_correction, require_static, safe_increment, scale_by_learning_rate, torch_axes
from ..transforms import tree_zeros_like
from ._registry import OptimInfo

__all__ = ['adahessian', 'hvp_fn_from_loss']


def hvp_fn_from_loss(loss_fn: Callable[..., jax.Array], params: Any, *args: Any) -> Callable[[Any], Any]:
    """Build the ``hvp_fn`` AdaHessian's update needs: ``v -> H v`` of ``loss_fn(params, *args)`` at ``params``.

    Forward-over-reverse (``jax.jvp`` of ``jax.grad``): one Hessian-vector
    product costs about two gradient evaluations.

    ``v`` may also be a partition of the params, as an AdaHessian inside
    ``optax.multi_transform`` (or ``optax.masked``) passes it: the params'
    structure with the other leaves (or whole subtrees) replaced by
    ``optax.MaskedNode()`` or ``None``. Those positions are zero tangents and
    hold the same placeholder in the result, so ``H v`` has ``v``'s structure
    and its leaves are the Hessian block of the partition applied to ``v``.

    Example:
        >>> import jax, jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> loss_fn = lambda p, x: jnp.sum((p['w'] * x) ** 2)
        >>> params, x = {'w': jnp.ones(3)}, jnp.arange(3.0)
        >>> tx = jt.optim.adahessian(0.1)
        >>> state = tx.init(params)
        >>> grads = jax.grad(loss_fn)(params, x)
        >>> updates, state = tx.update(grads, state, params, hvp_fn=jt.optim.hvp_fn_from_loss(loss_fn, params, x))
    """
    hvp = hvp_from_loss(loss_fn, params, *args)

    def _is_placeholder(x):
        return x is None or isinstance(x, optax.MaskedNode)

    def hvp_fn(v):
        if not any(_is_placeholder(x) for x in jax.tree.leaves(v, is_leaf=_is_placeholder)):
            return hvp(v)
        # params' structure: zeros (in each leaf's dtype) under every placeholder
        tangent = jax.tree.map(
            lambda vi, p: jax.tree.map(jnp.zeros_like, p) if _is_placeholder(vi) else vi,
            v,
            params,
            is_leaf=_is_placeholder,
        )
        hv = hvp(tangent)
        return jax.tree.map(lambda vi, h: vi if _is_placeholder(vi) else h, v, hv, is_leaf=_is_placeholder)

    return hvp_fn


class ScaleByAdahessianState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    key: jax.Array
    hessian: Any
    exp_avg: Any
    exp_hessian_diag_sq: Any


def _is_one(x) -> bool:
    return not isinstance(x, jax.core.Tracer) and x == 1


def _average_conv_kernel(h: jax.Array, layout: str) -> jax.Array:
    if h.ndim != 4:
        return h
    axes = torch_axes(4, layout)[2:]  # the spatial axes of a 2-d conv kernel stored in ``layout``
    return jnp.broadcast_to(jnp.mean(jnp.abs(h), axis=axes, keepdims=True), h.shape)


def scale_by_adahessian(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    hessian_power: float = 1.0,
    update_each: int = 1,
    n_samples: int = 1,
    avg_conv_kernel: bool = False,
    *,
    seed: int = 2147483647,
    layout: str = 'torch',
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    """AdaHessian's direction ``(m_t / bc1) / ((v_t / bc2)^(k/2) + eps)``, with ``v_t`` the EMA of ``D_t^2``.

    ``D_t`` is Hutchinson's Hessian-diagonal estimate from the update's
    ``hvp_fn`` argument, refreshed on steps ``0, k, 2k, ...`` (``update_each``)
    and reused in between, as timm does; with ``avg_conv_kernel`` it is
    replaced on 4-d leaves by its absolute value averaged over the kernel's
    spatial axes (``layout`` says which they are).

    ``m_t`` is kept in ``mu_dtype``, ``v_t`` in ``nu_dtype`` and the reused
    ``D_t`` in the package's state dtype (each defaults to the params' dtype,
    float32 for float16 params); everything is computed in float32 for
    low-precision leaves and the direction returned in the gradient's dtype.
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByAdahessianState(
            count=jnp.zeros([], jnp.int32),
            key=jax.random.PRNGKey(seed),
            hessian=tree_zeros_like(params),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_hessian_diag_sq=tree_zeros_like(params, nu_dtype),
        )

    def update_fn(grads, state, params=None, *, hvp_fn=None, **extra_args):
        del params, extra_args
        if hvp_fn is None:
            raise ValueError(
                'adahessian is second order: call tx.update(grads, state, params, hvp_fn=...) with '
                'hvp_fn(v) -> H v at the current params (see jaxopt_timm.optim.hvp_fn_from_loss)'
            )

        def fresh(key):
            return hutchinson_diagonal(hvp_fn, key, grads, n_samples, out_like=state.hessian)

        if update_each == 1:
            hess, key = fresh(state.key)
        else:
            refresh = state.count % update_each == 0
            hess, key = jax.lax.cond(refresh, fresh, lambda k: (state.hessian, k), state.key)
        if avg_conv_kernel:
            hess = jax.tree.map(lambda h: _average_conv_kernel(h, layout), hess)

        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        bc1, bc2 = pow_bias_correction(b1, t), pow_bias_correction(b2, t)

        def ema_m(g, m):
            cdt = compute_dtype(g.dtype)
            return (b1 * m.astype(cdt) + (1.0 - b1) * g.astype(cdt)).astype(m.dtype)

        def ema_v(g, h, v):
            cdt, h = compute_dtype(g.dtype), h.astype(compute_dtype(g.dtype))
            return (b2 * v.astype(cdt) + (1.0 - b2) * h * h).astype(v.dtype)

        mu = jax.tree.map(ema_m, grads, state.exp_avg)
        nu = jax.tree.map(ema_v, grads, hess, state.exp_hessian_diag_sq)

        def direction(g, m, v):
            cdt = compute_dtype(g.dtype)  # float32 for low-precision leaves
            m, v = m.astype(cdt), v.astype(cdt)
            scaled = v / bc2.astype(cdt)
            # torch's pow(0.5) is a square root; keep that exact path for the default power
            root = jnp.sqrt(scaled) if _is_one(hessian_power) else scaled ** (hessian_power / 2)
            return ((m / bc1.astype(cdt)) / (root + eps)).astype(g.dtype)

        updates = jax.tree.map(direction, grads, mu, nu)
        return updates, ScaleByAdahessianState(count=count, key=key, hessian=hess, exp_avg=mu, exp_hessian_diag_sq=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adahessian(
    learning_rate: Any = 0.1,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    hessian_power: float = 1.0,
    update_each: int = 1,
    n_samples: int = 1,
    avg_conv_kernel: bool = False,
    *,
    seed: int = 2147483647,
    layout: str = 'torch',
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Adahessian``: Adam on the Hutchinson estimate of the Hessian diagonal.

    .. math::
        D_t &= \frac{1}{n}\sum_{k=1}^{n} z_k \odot (H_t z_k), \quad z_k \sim \text{Rademacher} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) D_t^2 \\
        \theta_t &= \theta_{t-1}(1 - \eta\lambda)
            - \frac{\eta}{1-\beta_1^t}\, \frac{m_t}{(v_t / (1-\beta_2^t))^{k/2} + \epsilon}

    The update needs the extra argument ``hvp_fn``: ``tx.update(grads, state,
    params, hvp_fn=hvp)`` with ``hvp(v) = H v`` at the current params (build it
    with :func:`hvp_fn_from_loss`). :math:`D_t` is recomputed every
    ``update_each`` steps (steps 0, k, 2k, ...) and reused in between.

    Args:
        learning_rate, betas, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the Hessian root.
        weight_decay: decoupled decay :math:`\lambda` (AdamW-style, float or per-leaf tree).
        hessian_power: :math:`k` in [0, 1].
        update_each: refresh the Hessian estimate every this many steps (>= 1).
        n_samples: Rademacher probes per estimate (>= 1).
        avg_conv_kernel: on 4-d leaves, replace :math:`D_t` by ``|D_t|`` averaged over the kernel's
            spatial axes (AdaHessian's spatial averaging for convolutions).
        seed: seed of the probe PRNG key kept in the state (timm's fixed generator seed by default).
        layout: ``'torch'`` (conv ``(O, I, kH, kW)``: average axes 2, 3) or ``'flax'``
            (conv ``(kH, kW, I, O)``: average axes 0, 1); only used by ``avg_conv_kernel``.
        mu_dtype: dtype of the first moment ``exp_avg`` (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment ``exp_hessian_diag_sq`` (default: the params' dtype; float32 for
            float16 params). The reused estimate :math:`D_t` (``hessian``) always takes the default.

    Example:
        >>> import jax, jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> loss_fn = lambda p: jnp.sum(p['w'] ** 4)
        >>> params = {'w': jnp.ones(3)}
        >>> tx = jt.optim.adahessian(0.1)
        >>> state = tx.init(params)
        >>> grads = jax.grad(loss_fn)(params)
        >>> hvp = jt.optim.hvp_fn_from_loss(loss_fn, params)
        >>> updates, state = tx.update(grads, state, params, hvp_fn=hvp)
        >>> params = optax.apply_updates(params, updates)

    Note:
        The probes are drawn from JAX's PRNG, not torch's generator, so with a
        non-diagonal Hessian single steps differ from timm's by the estimator's
        noise (the expectation is the same); with a diagonal Hessian the
        estimate is exact and the runs match.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype, avg_conv_kernel=avg_conv_kernel
    )
    check_range('hessian_power', hessian_power, 0.0, 1.0)
    check_range('update_each', update_each, 1, integer=True)
    check_range('n_samples', n_samples, 1, integer=True)
    require_static('adahessian', 'the step structure', update_each=update_each, n_samples=n_samples, seed=seed)
    check_range('seed', seed, 0, integer=True)
    check_choice('layout', layout, ('torch', 'flax'))
    return optax.chain(
        scale_by_adahessian(
            betas[0],
            betas[1],
            eps,
            hessian_power,
            int(update_each),
            int(n_samples),
            avg_conv_kernel,
            seed=int(seed),
            layout=layout,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale),
    )


OPTIMIZERS = (
    OptimInfo(
        name='adahessian',
        alias=adahessian,
        timm_class='timm.optim.Adahessian',
        description='An Adaptive Second Order Optimizer',
        has_betas=True,
        second_order=True,
        shape_aware=True,
        default_lr=0.1,
        benchmarked=True,
        state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_hessian_diag_sq',)},
    ),
)
