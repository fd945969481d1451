"""Muon's direction: :func:`scale_by_muon`, the lr-free step of the leaves that :func:`muon` routes to Muon.

Split from :mod:`._muon`, which keeps the routing, the alias with its AdamW / NAdamW fallback and the
registry records, so that each module stays short. Its public names are exported by :mod:`._muon`
(``jaxopt_timm.optim.*``); like every helper module of :mod:`jaxopt_timm.optim` it exports nothing itself
and registers no optimizer.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import resolve_dtype
from ..transforms import (
    compute_dtype,
    from_torch_layout,
    muon_lr_adjustment,
    orthogonalize_tensors,
    resolve_ns_coefficients,
    safe_increment,
    to_torch_layout,
    torch_lerp_rounded_weight,
    tree_zeros_like,
)

__all__: List[str] = []  # the names below are exported by ._muon


# ------------------------------------------------------------------------------------------------ Muon direction


class ScaleByMuonState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    momentum_buffer: Any
    exp_avg_sq: Any  # AdaMuon's second moment of the orthogonalised direction; None leaves for algo='muon'


def scale_by_muon(
    momentum: float = 0.95,
    nesterov: bool = False,
    ns_steps: int = 5,
    ns_coefficients: Any = 'quintic',
    eps: float = 1e-7,
    safety_factor: float = 1.0,
    adjust_lr_fn: Optional[str] = 'match_rms_adamw',
    conv_mode: str = 'flatten',
    normalize_spatial: bool = True,
    algo: str = 'muon',
    beta2: float = 0.95,
    scale_eps: bool = False,
    *,
    ns_dtype: Any = jnp.bfloat16,
    layout: str = 'torch',
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    r"""Muon's direction (lr-free) for every leaf it is given; the leaves must be Muon-suitable matrices or kernels.

    .. math::
        B_t &= \mu B_{t-1} + (1-\mu) g_t, \qquad M_t = \mu B_t + (1-\mu) g_t \text{ (nesterov) else } B_t \\
        O_t &= \mathrm{NS}(M_t) \quad (\text{>2-d: flattened to } (out, in\cdot k) \text{ or batched per tap}) \\
        d_t &= s\,O_t \quad (\text{muon}), \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) O_t^2, \quad d_t = s\,\frac{O_t}{\sqrt{\hat v_t}+\epsilon}
            \ (\text{adamuon, RMS-normalised for match\_rms\_adamw})

    with :math:`s` timm's shape-dependent ``adjust_lr_fn`` factor. The
    caller multiplies by :math:`-\eta`. Newton–Schulz (see
    :func:`jaxopt_timm.transforms.orthogonalize_via_newton_schulz`)
    runs once per distinct matrix shape, batched over the leaves sharing it.

    :math:`B_t` is kept in ``mu_dtype`` and AdaMuon's :math:`v_t` in
    ``nu_dtype`` (default: the params' dtype, float32 for float16 params);
    their EMAs are computed in float32 for low-precision buffers.
    """
    ns_dtype = jnp.dtype(ns_dtype)
    coefficients = resolve_ns_coefficients(ns_coefficients)
    ada = algo == 'adamuon'
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByMuonState(
            count=jnp.zeros([], jnp.int32),
            momentum_buffer=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=tree_zeros_like(params, nu_dtype) if ada else jax.tree.map(lambda _: None, params),
        )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        leaves, treedef = jax.tree.flatten(updates)
        bufs = treedef.flatten_up_to(state.momentum_buffer)
        new_bufs, dirs = [], []
        for g, buf in zip(leaves, bufs):
            cdt = compute_dtype(buf.dtype)  # low-precision buffers: the EMA in float32, rounded once when stored
            buf = torch_lerp_rounded_weight(buf.astype(cdt), g.astype(cdt), 1.0 - momentum).astype(buf.dtype)
            new_bufs.append(buf)
            u = torch_lerp_rounded_weight(g.astype(cdt), buf.astype(cdt), momentum) if nesterov else buf
            dirs.append(to_torch_layout(u, layout))
        # One Newton–Schulz call per matrix shape, batched over the leaves (and kernel taps) that share it.
        ortho = orthogonalize_tensors(dirs, conv_mode, ns_steps, coefficients, eps, safety_factor, ns_dtype, scale_eps)
        sq_leaves = treedef.flatten_up_to(state.exp_avg_sq)
        t = count.astype(jnp.float32)
        outs, new_sqs = [], []
        for g, o, sq in zip(leaves, ortho, sq_leaves):
            scale, rms_norm = muon_lr_adjustment(o.shape, adjust_lr_fn, algo, conv_mode, normalize_spatial)
            o = o.astype(jnp.float32)
            if ada:
                sq_t = to_torch_layout(sq, layout).astype(jnp.float32)
                sq_t = (beta2 * sq_t + (1.0 - beta2) * o * o).astype(sq.dtype)  # as stored
                new_sqs.append(from_torch_layout(sq_t, layout))
                sq_t = sq_t.astype(jnp.float32)
                # with rms_norm, the norm rescaling below makes bias correction moot (timm skips it)
                o = o / (jnp.sqrt(sq_t if rms_norm else sq_t / (1.0 - jnp.float32(beta2) ** t)) + eps)
                if rms_norm:
                    o = o / (jnp.sqrt(jnp.sum(o * o)) + eps)
            else:
                new_sqs.append(sq)
            d = jnp.float32(scale) * o
            outs.append(from_torch_layout(d, layout).astype(g.dtype))
        new_state = ScaleByMuonState(
            count=count,
            momentum_buffer=jax.tree.unflatten(treedef, new_bufs),
            exp_avg_sq=jax.tree.unflatten(treedef, new_sqs) if ada else state.exp_avg_sq,
        )
        return jax.tree.unflatten(treedef, outs), new_state

    return optax.GradientTransformation(init_fn, update_fn)
