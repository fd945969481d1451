"""Muon and AdaMuon with an AdamW / NAdamW fallback (timm's ``Muon``).

Names: ``muon``, ``nmuon`` (Nesterov, NAdamW fallback), ``adamuon`` and
``nadamuon``. References: Jordan et al., 2024, "Muon: An optimizer for hidden
layers in neural networks" (kellerjordan.github.io/posts/muon); Liu et al.,
2025, "Muon is Scalable for LLM Training" (arXiv:2502.16982, the
``match_rms_adamw`` lr scale); Pethick et al., 2025 (Scion, arXiv:2502.07529,
``rms_to_rms``); Si et al., 2025, "AdaMuon" (arXiv:2507.11005); Amsel et al.,
2025, "The Polar Express" (arXiv:2505.16932); eps damping from
arXiv:2512.05620.

Leaves are routed once, from their shapes and the ``use_fallback`` tree, to
the Muon direction or to the Adam fallback; the routing is static, so the
whole step is one jitted function (Newton–Schulz runs batched over all Muon
leaves whose matrices share a shape).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np
import optax

from .._validate import (
    check_betas,
    check_bool,
    check_choice,
    check_lr,
    check_range,
    check_weight_decay,
    resolve_dtype,
)
from ..transforms import (
    LAYOUTS,
    add_decoupled_weight_decay,
    leaf_values,
    orthogonalizable_shape,
    resolve_ns_coefficients,
    scale_by_adam,
    scale_by_learning_rate,
    torch_axes,
)
from ._muon_step import scale_by_muon
from ._registry import OptimInfo

__all__ = ['muon', 'scale_by_muon', 'muon_routes_to_fallback']

_logger = logging.getLogger(__name__)

_MUON_ADJUST = (None, 'original', 'match_rms_adamw', 'rms_to_rms')
_ADAMUON_ADJUST = (None, 'match_rms_adamw', 'rms_to_rms', 'rsqrt_in')


# ------------------------------------------------------------------------------------------------ layouts, routing


def muon_routes_to_fallback(shape: Sequence[int], use_fallback: bool = False, layout: str = 'torch') -> bool:
    """Whether a leaf of ``shape`` takes the Adam fallback: an explicit ``use_fallback``, else timm's shape rule.

    timm's rule (on the torch layout): fewer than two non-unit dims, a unit
    first or second dim, a flattened ``(out, in * prod(kernel))`` matrix with a
    side below 4, or an aspect ratio above 128 go to the fallback.
    """
    if use_fallback:
        return True
    shape = tuple(shape)
    return not orthogonalizable_shape(tuple(shape[a] for a in torch_axes(len(shape), layout)))


# ------------------------------------------------------------------------------------------------ the alias


def _masked(labels: Any, values: Any, keep: str) -> Any:
    return jax.tree.map(lambda lab, v: v if lab == keep else optax.MaskedNode(), labels, values)


def muon(
    learning_rate: Any = 0.02,
    weight_decay: Any = 0.0,
    momentum: float = 0.95,
    nesterov: bool = False,
    ns_steps: int = 5,
    ns_coefficients: Any = 'quintic',
    eps: float = 1e-7,
    safety_factor: float = 1.0,
    adjust_lr_fn: Optional[str] = 'match_rms_adamw',
    conv_mode: str = 'flatten',
    normalize_spatial: bool = True,
    adamw_lr: Optional[float] = None,
    fallback_lr_scale: float = 1.0,
    betas: Tuple[float, float] = (0.9, 0.95),
    algo: str = 'muon',
    scale_eps: bool = False,
    capturable: bool = False,
    verbose: bool = False,
    *,
    use_fallback: Any = False,
    lr_scale: Any = None,
    ns_dtype: Any = 'bfloat16',
    layout: str = 'torch',
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Muon``: orthogonalised momentum for matrices, AdamW (NAdamW with ``nesterov``) for the rest.

    Muon leaves (see :func:`muon_routes_to_fallback`), per step:

    .. math::
        \theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta\, d_t

    with :math:`d_t` from :func:`scale_by_muon` (``algo='muon'``: the
    Newton–Schulz orthogonalised momentum times the ``adjust_lr_fn`` shape
    factor; ``algo='adamuon'``: that direction divided elementwise by the root
    of its own second moment, RMS-rescaled). Fallback leaves take timm's AdamW
    step (NAdamW's Nesterov numerator when ``nesterov``) with ``betas`` and
    ``eps`` and lr :math:`\eta' = \eta \cdot` ``fallback_lr_scale``, decay
    :math:`\theta(1-\eta'\lambda)` included. :math:`\eta` is the group lr
    (``lr_scale`` included).

    Args:
        learning_rate: float or schedule ``step -> lr`` (timm default 0.02).
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        momentum: Muon's momentum :math:`\mu` in [0, 1).
        nesterov: Nesterov look-ahead for Muon and the NAdamW fallback.
        ns_steps: Newton–Schulz iterations.
        ns_coefficients: a preset ('original', 'quintic', 'polar_express', 'polar_express_safer'), one
            ``(a, b, c)`` triple or a sequence of triples (truncated or padded with the last to ``ns_steps``).
        eps: Newton–Schulz norm floor, AdaMuon's denominator eps and the fallback's Adam eps (timm shares it).
        safety_factor: multiplies the norm before normalising (Polar Express uses 1.01), >= 1 (below 1 the
            iteration can diverge: timm accepts it and NaNs).
        adjust_lr_fn: Muon: None, 'original', 'match_rms_adamw', 'rms_to_rms'; AdaMuon: None,
            'match_rms_adamw' (RMS-normalised), 'rms_to_rms', 'rsqrt_in'.
        conv_mode: >2-d leaves: 'flatten' to ``(out, in * prod(kernel))`` or 'batched' (one matrix per tap).
        normalize_spatial: 'batched' mode: scale by ``prod(kernel) ** -0.5``.
        adamw_lr: deprecated (as in timm): sets ``fallback_lr_scale = adamw_lr / learning_rate``.
        fallback_lr_scale: fallback lr multiplier.
        betas: ``(beta1, beta2)``: the fallback's; ``beta2`` is also AdaMuon's.
        algo: 'muon' or 'adamuon'.
        scale_eps: Newton–Schulz floor as an added damping ``eps * sqrt(in / out)`` (μP style).
        capturable: accepted for timm compatibility (CUDA-graph switch); no effect here.
        verbose: log the routing (Muon / fallback leaf counts) when the state is initialised.
        use_fallback: bool or per-leaf tree of bools (the factory's ``fallback_list``): True sends a leaf to
            the fallback regardless of shape, as timm's ``use_fallback`` param-group key.
        lr_scale: per-leaf lr multipliers (layer decay).
        ns_dtype: dtype of the Newton–Schulz iteration. timm hard-codes bfloat16 (the default here);
            'float32' gives the exact-arithmetic iteration (timm has no switch for it).
        layout: 'torch' (Linear ``(out, in)``, conv ``(O, I, *k)``) or 'flax': every >=2-d leaf is read as a
            Flax kernel, Dense ``(in, out)`` or conv ``(*k, I, O)``, and routed, reshaped, orthogonalised and
            scaled exactly as timm treats the transposed torch tensor. Non-kernel >=2-d leaves (embeddings)
            are read as kernels too: route them with ``use_fallback`` / ``fallback_list``.
        mu_dtype: dtype of the first moments: Muon's momentum ``momentum_buffer`` and the fallback's
            ``exp_avg`` (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moments: the fallback's ``exp_avg_sq`` and AdaMuon's ``exp_avg_sq``
            (default: the params' dtype; float32 for float16 params).

    Example:
        >>> import jax, jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((16, 32)), 'b': jnp.zeros(16)}
        >>> tx = jt.optim.muon(0.02, weight_decay=0.01)
        >>> state = tx.init(params)
        >>> updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        timm picks the route from the torch shape; the factory's ``fallback_list`` /
        ``fallback_no_weight_decay`` force it per leaf. Registered as ``muon``, ``nmuon``
        (``nesterov``), ``adamuon`` (``algo='adamuon'``) and ``nadamuon`` (both).
    """
    check_lr(learning_rate)
    check_weight_decay(weight_decay)
    check_range('momentum', momentum, 0.0, 1.0, hi_open=True)
    check_range('ns_steps', ns_steps, 0, integer=True)
    coefficients = resolve_ns_coefficients(ns_coefficients)
    check_range('eps', eps, 0.0)
    # >= 1: Newton-Schulz then converges (its input's spectral norm <= 1); timm accepts any and NaNs from ~0.5 down
    check_range('safety_factor', safety_factor, 1.0)
    check_choice('algo', algo, ('muon', 'adamuon'))
    adjust_lr_fn = adjust_lr_fn or None
    check_choice('adjust_lr_fn', adjust_lr_fn, _ADAMUON_ADJUST if algo == 'adamuon' else _MUON_ADJUST)
    check_choice('conv_mode', conv_mode, ('flatten', 'batched'))
    check_betas(betas)
    check_range('fallback_lr_scale', fallback_lr_scale, 0.0)
    for name, value in (
        ('nesterov', nesterov),
        ('normalize_spatial', normalize_spatial),
        ('scale_eps', scale_eps),
        ('capturable', capturable),
        ('verbose', verbose),
    ):
        check_bool(name, value)
    check_choice('layout', layout, LAYOUTS)
    ns_dtype = resolve_dtype('ns_dtype', ns_dtype)
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    if adamw_lr is not None:
        warnings.warn(
            'adamw_lr is deprecated, use fallback_lr_scale=adamw_lr/learning_rate instead', FutureWarning, stacklevel=2
        )
        check_range('adamw_lr', adamw_lr, 0.0)
        if callable(learning_rate) or isinstance(learning_rate, jax.core.Tracer) or float(learning_rate) == 0:
            raise ValueError(
                f'Invalid adamw_lr: {adamw_lr!r} needs a non-zero float learning_rate; expected None '
                '(use fallback_lr_scale)'
            )
        fallback_lr_scale = float(adamw_lr) / float(learning_rate)

    direction = scale_by_muon(  # ns_steps may be traced (inject_hyperparams): Newton-Schulz loops over it then
        momentum,
        nesterov,
        ns_steps if isinstance(ns_steps, jax.Array) else int(ns_steps),
        coefficients,
        eps,
        safety_factor,
        adjust_lr_fn,
        conv_mode,
        normalize_spatial,
        algo,
        betas[1],
        scale_eps,
        ns_dtype=ns_dtype,
        layout=layout,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    fallback = scale_by_adam(betas[0], betas[1], eps, nesterov=nesterov, mu_dtype=mu_dtype, nu_dtype=nu_dtype)

    def build(like):
        # Routing is static (shapes and concrete flags), so it is recomputed identically in init and update.
        flags = leaf_values(use_fallback, like)
        labels = jax.tree.map(
            lambda p, f: 'fallback' if muon_routes_to_fallback(np.shape(p), bool(f), layout) else 'muon', like, flags
        )
        scales = leaf_values(1.0 if lr_scale is None else lr_scale, like)
        fb_scales = jax.tree.map(lambda s: s * fallback_lr_scale, scales)
        wds = leaf_values(weight_decay, like)

        def branch(dir_tx, keep, leaf_scales):
            ls = _masked(labels, leaf_scales, keep)
            return optax.chain(
                dir_tx,
                scale_by_learning_rate(learning_rate, ls),
                add_decoupled_weight_decay(_masked(labels, wds, keep), learning_rate, ls),
            )

        tx = optax.multi_transform(
            {'muon': branch(direction, 'muon', scales), 'fallback': branch(fallback, 'fallback', fb_scales)}, labels
        )
        return tx, labels

    def init_fn(params):
        tx, labels = build(params)
        if verbose:
            routes = jax.tree.leaves(labels)
            _logger.info('Muon parameter routing: %d Muon, %d fallback', routes.count('muon'), routes.count('fallback'))
        return tx.init(params)

    def update_fn(updates, state, params=None):
        return build(updates)[0].update(updates, state, params)

    return optax.with_extra_args_support(optax.GradientTransformation(init_fn, update_fn))


_FLAGS: Dict[str, Any] = dict(
    alias=muon,
    timm_class='timm.optim.Muon',
    has_momentum=True,
    has_eps=True,
    has_betas=True,
    packing='stacked',
    shape_aware=True,
    fallback='use_fallback',
    parity_mode='newton_schulz_float32',
    default_lr=0.02,
    # Muon's momentum and the AdamW fallback's moments
    state_dtypes={'mu_dtype': ('momentum_buffer', 'exp_avg'), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    OptimInfo(
        name='muon',
        description='MomentUm Orthogonalized by Newton-schulz with AdamW fallback for 1D params',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.contrib.muon(lr, weight_decay=wd),
        **_FLAGS,
    ),
    OptimInfo(
        name='nmuon',
        description='MomentUm Orthogonalized by Newton-schulz with Nesterov and NAdamW fallback for 1D params',
        defaults={'nesterov': True},
        **_FLAGS,
    ),
    OptimInfo(
        name='adamuon',
        description='AdaMuon: Muon with adaptive second moment estimation on orthogonalized directions',
        defaults={'algo': 'adamuon'},
        **_FLAGS,
    ),
    OptimInfo(
        name='nadamuon',
        description='AdaMuon with Nesterov momentum and NAdamW fallback for 1D params',
        defaults={'algo': 'adamuon', 'nesterov': True},
        **_FLAGS,
    ),
)
