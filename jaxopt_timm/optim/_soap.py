"""SOAP (``pytorch-optimizer`` 4.1.0: ``SOAP``): Adam run in the eigenbases of Shampoo's preconditioner.

Reference: Vyas et al., 2024, "SOAP: Improving and Stabilizing Shampoo using Adam" (arXiv:2409.11321).

Each preconditioned dim ``i`` of a leaf keeps a statistic ``GG_i <- lerp(GG_i, G_(i) G_(i)^T, 1 - shampoo_beta)``
and an orthogonal basis ``Q_i``. With ``P(x) = x x_1 Q_1 ... x_n Q_n`` (``Q_i^T`` along each dim) and
``P^-1`` its inverse::

    m = lerp(m, g, 1 - b1),  v = lerp(v, P(g)^2, 1 - b2)
    n = P^-1(P(m) / (sqrt(v) + eps)),  n /= rms(n) + eps   (normalize_gradient)
    p <- (p - lr sqrt(1 - b2^t) / (1 - b1^t) n) (1 - lr wd)

The first call only sets ``GG`` and ``Q_i = eigh(GG_i)`` (eigenvalues descending) and leaves the params as they
are (no decay either), as the reference; ``t`` counts the calls after it. After each step ``GG`` takes the
step's gradient, and every ``precondition_frequency`` steps ``Q_i`` is refreshed by one power-iteration step
and a QR (:func:`jaxopt_timm.transforms.eigenbasis_qr_refresh`), ``v`` being re-indexed by the new order of
the estimated eigenvalues. The refresh is a ``lax.switch`` on the step count: one jitted step, no Python
branching on data.

Which dims are preconditioned: every dim of a >=2-d leaf no larger than ``max_precondition_dim`` (larger
dims keep the identity basis: Adam along them); a 1-d leaf only with ``precondition_1d`` (and size <=
``max_precondition_dim``); never a 0-d leaf. ``merge_dims`` first merges adjacent dims of a >=2-d leaf while
their product stays <= ``max_precondition_dim`` (the reference's ``merge_small_dims``; 4-d leaves are read
as NHWC and permuted to NCHW first when ``data_format='channels_last'``).

State: ``exp_avg`` and ``exp_avg_sq`` (params' shapes) plus, per preconditioned dim of size ``d``, ``GG`` and
``Q`` (``d x d`` each, in the params' dtype as the reference keeps them, float32 for float16 params; the
eigendecompositions and QRs run in float32): ``2 P + 2 sum_i d_i^2`` floats for ``P`` params.
Under FSDP the ``d x d`` matrices are not param-shaped: they are replicated on every device unless sharded
explicitly (give ``GG``/``Q`` their own sharding), and each eigendecomposition runs on the full matrix.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_betas, check_bool, check_choice, check_lr, check_range, check_weight_decay
from ..transforms import (
    LAYOUTS,
    add_decoupled_weight_decay,
    compute_dtype,
    dim_statistic,
    eigenbasis,
    eigenbasis_qr_refresh,
    is_params_placeholder,
    map_matrices,
    negate_if,
    pow_bias_correction,
    require_static,
    safe_increment,
    scale_by_learning_rate,
    state_dtype,
    state_zeros,
    torch_lerp,
)
from ._registry import OptimInfo
from ._soap_plan import SoapLeafPlan, _from_work, _project, _to_work, soap_leaf_plan

__all__ = ['soap', 'scale_by_soap', 'soap_leaf_plan', 'ScaleBySoapState']

_DATA_FORMATS = ('channels_first', 'channels_last')


class ScaleBySoapState(NamedTuple):
    # calls so far (the reference's group ``step``; the first call only sets the bases)
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any  # params' shapes
    exp_avg_sq: Any  # params' shapes, in the coordinates of the bases
    GG: Any  # per leaf (tree order), per work dim: the d x d statistic or None (identity dim)
    Q: Any  # per leaf, per work dim: the d x d orthogonal basis or None


def scale_by_soap(
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: Optional[float] = None,
    eps: float = 1e-8,
    precondition_frequency: int = 10,
    max_precondition_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    correct_bias: bool = True,
    normalize_gradient: bool = False,
    data_format: str = 'channels_first',
    *,
    layout: str = 'torch',
) -> optax.GradientTransformation:
    """SOAP's direction ``sqrt(1 - b2^t) / (1 - b1^t) n`` (no lr, no decay; zeros on the first call)."""
    sb = b2 if shampoo_beta is None else shampoo_beta

    def plan(p) -> SoapLeafPlan:
        return soap_leaf_plan(p.shape, max_precondition_dim, merge_dims, precondition_1d, data_format, layout)

    def init_fn(params):
        if is_params_placeholder(params):  # optax.tree.map_params: one non-param leaf for the matrices
            return ScaleBySoapState(jnp.zeros([], jnp.int32), params, params, jnp.zeros([]), jnp.zeros([]))
        leaves = jax.tree.leaves(params)
        mats = []
        for p in leaves:
            pl, dt = plan(p), state_dtype(p.dtype)
            mats.append(tuple(jnp.eye(d, dtype=dt) if on else None for d, on in zip(pl.work_shape, pl.precond)))
        zeros = state_zeros(params)
        return ScaleBySoapState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=zeros,
            exp_avg_sq=zeros,
            GG=tuple(tuple(None if q is None else jnp.zeros_like(q) for q in qs) for qs in mats),
            Q=tuple(mats),
        )

    def update_fn(updates, state, params=None):
        del params
        c = state.count
        t = c.astype(jnp.float32)
        scale = jnp.sqrt(pow_bias_correction(b2, t)) / pow_bias_correction(b1, t) if correct_bias else 1.0
        treedef = jax.tree.structure(updates)
        grads, ms, vs = (treedef.flatten_up_to(x) for x in (updates, state.exp_avg, state.exp_avg_sq))
        plans = [plan(g) for g in grads]
        works = [_to_work(g.astype(compute_dtype(g.dtype)), pl) for g, pl in zip(grads, plans)]

        def step(_):
            outs, new_ms, new_vs = [], [], []
            for g, m, v, gw, qs, pl in zip(grads, ms, vs, works, state.Q, plans):
                cdt = gw.dtype
                m_new = torch_lerp(m.astype(cdt), g.astype(cdt), 1.0 - b1)
                v_w = torch_lerp(_to_work(v.astype(cdt), pl), jnp.square(_project(gw, qs, True)), 1.0 - b2)
                n = _project(_project(_to_work(m_new, pl), qs, True) / (jnp.sqrt(v_w) + eps), qs, False)
                if normalize_gradient:
                    n = n / (jnp.sqrt(jnp.mean(jnp.square(n))) + eps)
                outs.append(_from_work(n * jnp.asarray(scale, cdt), pl, g.shape).astype(g.dtype))
                new_ms.append(m_new.astype(m.dtype))
                new_vs.append(_from_work(v_w, pl, g.shape).astype(v.dtype))
            return outs, new_ms, new_vs

        def first(_):
            return [jnp.zeros_like(g) for g in grads], list(ms), list(vs)

        outs, new_ms, new_vs = jax.lax.cond(c == 0, first, step, None)
        new_gg = tuple(
            tuple(
                None if s is None else torch_lerp(s, dim_statistic(gw.astype(s.dtype), axis), 1.0 - sb)
                for axis, s in enumerate(ss)
            )
            for ss, gw in zip(state.GG, works)
        )

        # the bases: eigh on the first call, a QR refresh every precondition_frequency steps, else kept
        slots = [(k, axis) for k, ss in enumerate(new_gg) for axis, s in enumerate(ss) if s is not None]
        ggs = [new_gg[k][axis] for k, axis in slots]
        qs_old = [state.Q[k][axis] for k, axis in slots]

        def keep(vs):
            return qs_old, vs

        def eig(vs):
            return map_matrices(eigenbasis, ggs), vs

        def refresh(vs):
            res = map_matrices(eigenbasis_qr_refresh, ggs, qs_old)
            vs = list(vs)
            for (k, axis), (_, order) in zip(slots, res):  # re-index v along that work dim
                w = jnp.take(_to_work(vs[k], plans[k]), order, axis=axis)
                vs[k] = _from_work(w, plans[k], grads[k].shape)
            return [q for q, _ in res], vs

        branch = jnp.where(c == 0, 1, jnp.where(c % precondition_frequency == 0, 2, 0))
        new_qs, new_vs = jax.lax.switch(branch, (keep, eig, refresh), new_vs) if slots else (qs_old, new_vs)
        q_tree = [list(qs) for qs in state.Q]
        for (k, axis), q in zip(slots, new_qs):
            q_tree[k][axis] = q
        return treedef.unflatten(outs), ScaleBySoapState(
            count=safe_increment(c),
            exp_avg=treedef.unflatten(new_ms),
            exp_avg_sq=treedef.unflatten(new_vs),
            GG=new_gg,
            Q=tuple(tuple(qs) for qs in q_tree),
        )

    return optax.GradientTransformation(init_fn, update_fn)


class _SkipFirstState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)


def _skip_first() -> optax.GradientTransformation:
    """Zero updates on the first call: the reference's first step only builds the bases (decay included)."""

    def update_fn(updates, state, params=None):
        del params
        updates = jax.tree.map(lambda u: jnp.where(state.count == 0, jnp.zeros_like(u), u), updates)
        return updates, _SkipFirstState(safe_increment(state.count))

    return optax.GradientTransformation(lambda _: _SkipFirstState(jnp.zeros([], jnp.int32)), update_fn)


def soap(
    learning_rate: Any = 3e-3,
    betas: Tuple[float, float] = (0.95, 0.95),
    shampoo_beta: Optional[float] = None,
    weight_decay: Any = 1e-2,
    precondition_frequency: int = 10,
    max_precondition_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    correct_bias: bool = True,
    normalize_gradient: bool = False,
    data_format: str = 'channels_first',
    eps: float = 1e-8,
    maximize: bool = False,
    *,
    layout: str = 'torch',
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``pytorch_optimizer.SOAP``: Adam in the eigenbases of Shampoo's per-dim statistics (see the module docstring).

    Args:
        learning_rate, betas, maximize, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        shampoo_beta: decay of the statistics ``GG`` (None: ``betas[1]``), in [0, 1].
        weight_decay: decoupled decay ``p (1 - lr wd)``, applied after the step as the reference (float or
            per-leaf tree).
        precondition_frequency: steps between the bases' QR refreshes, >= 1.
        max_precondition_dim: dims larger than this keep the identity basis (and the merge limit), >= 1.
        merge_dims: merge adjacent small dims of >=2-d leaves before preconditioning.
        precondition_1d: precondition 1-d leaves too.
        correct_bias: Adam's bias correction in the step size.
        normalize_gradient: divide the direction by its RMS (+ eps).
        data_format: ``'channels_first'`` or ``'channels_last'``: how ``merge_dims`` reads 4-d leaves.
        eps: added to the root second moment (and to the RMS), >= 0.
        layout: ``'torch'`` or ``'flax'`` (Dense ``(in, out)``, conv ``(*k, I, O)``): only ``merge_dims`` depends
            on the dim order (which dims are adjacent); the bases of a Flax leaf are those of its torch twin.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> tx = jt.optim.soap(3e-3, weight_decay=0.01, precondition_frequency=10)
        >>> state = tx.init({'w': jnp.ones((4, 3))})
    """
    check_lr(learning_rate)
    check_betas(betas)
    check_range('shampoo_beta', shampoo_beta, 0.0, 1.0, allow_none=True)
    check_weight_decay(weight_decay)
    check_range('precondition_frequency', precondition_frequency, 1, integer=True)
    check_range('max_precondition_dim', max_precondition_dim, 1, integer=True)
    for name, flag in (
        ('merge_dims', merge_dims),
        ('precondition_1d', precondition_1d),
        ('correct_bias', correct_bias),
        ('normalize_gradient', normalize_gradient),
        ('maximize', maximize),
    ):
        check_bool(name, flag)
    check_choice('data_format', data_format, _DATA_FORMATS)
    check_range('eps', eps, 0.0)
    check_choice('layout', layout, LAYOUTS)
    require_static(
        'soap',
        'which dims are preconditioned and the step structure',
        max_precondition_dim=max_precondition_dim,
        precondition_frequency=precondition_frequency,
    )
    direction = scale_by_soap(
        betas[0],
        betas[1],
        shampoo_beta,
        eps,
        int(precondition_frequency),
        int(max_precondition_dim),
        merge_dims,
        precondition_1d,
        correct_bias,
        normalize_gradient,
        data_format,
        layout=layout,
    )
    return optax.with_extra_args_support(
        optax.chain(
            negate_if(maximize),
            direction,
            scale_by_learning_rate(learning_rate, lr_scale),
            add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, order='post'),
            _skip_first(),
        )
    )


OPTIMIZERS = (
    OptimInfo(
        name='soap',
        alias=soap,
        source='pytorch-optimizer 4.1.0',
        timm_class='pytorch_optimizer.SOAP',
        description='SOAP, Adam in the eigenbases of Shampoo\'s preconditioner',
        has_betas=True,
        shape_aware=True,
        default_lr=3e-3,
        packing='stacked',
        benchmarked=True,
        parity_mode='soap_full_rank',
    ),
)
