"""Newton–Schulz orthogonalisation (the "zeroth power" of a matrix) as timm's Muon computes it.

optax's ``orthogonalize_via_newton_schulz`` (``optax.contrib.muon``) fixes one
coefficient triple, normalises by the Frobenius norm plus eps and runs in the
input dtype. timm differs: per-step coefficient schedules ('quintic', Polar
Express), a clamped (or, with ``scale_eps``, added) norm floor with a safety
factor, and a reduced-precision iteration (bfloat16 by default) in which each
fused matrix product ``beta * C + alpha * A @ B`` accumulates in float32 and is
rounded once. References: Jordan et al., 2024, "Muon: An optimizer for hidden
layers in neural networks"; Amsel et al., 2025, "The Polar Express"
(arXiv:2505.16932); eps damping from arXiv:2512.05620.

Also here, timm Muon's view of a tensor as matrices: which torch shapes it orthogonalises, how >2-d
kernels become matrices ('flatten' or one per tap), the lr factor each matrix shape gets
(``adjust_lr_fn``), and one Newton–Schulz call per distinct matrix shape, batched over the tensors that
share it (so a model's many equal blocks cost one iteration).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_timm.transforms._tree import cpu_fence

__all__ = [
    'NS_COEFFICIENTS',
    'resolve_ns_coefficients',
    'ns_coefficient_sequence',
    'orthogonalize_via_newton_schulz',
    'orthogonalizable_shape',
    'orthogonalize_tensors',
    'muon_lr_adjustment',
]

Coefficients = Tuple[Tuple[float, float, float], ...]

# Published coefficient schedules, under timm's preset names (values as timm ships them).
NS_COEFFICIENTS: Mapping[str, Coefficients] = {
    'original': ((3.4445, -4.7750, 2.0315),),
    'quintic': (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
    'polar_express': (
        (8.237312490495555, -23.157747414558198, 16.680568411445915),
        (4.082441999064835, -2.893047735332586, 0.5252849256975648),
        (3.9263479922546582, -2.8547468034765298, 0.5318022422894988),
        (3.2982187133085143, -2.424541981026706, 0.48632008358844075),
        (2.2970369434552573, -1.63662558125903, 0.4002628455953627),
        (1.8763805351440397, -1.2347896577722228, 0.35891887501668385),
        (1.8564423485617974, -1.2132449880935525, 0.3568003487825883),
        (1.8749994008682747, -1.2499988017229169, 0.3749994008546422),
    ),
    'polar_express_safer': (
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.0429299351667245, -2.808917465908704, 0.5000178451051299),
        (3.8916678022926563, -2.7724841532176825, 0.5060648178503389),
        (3.285753657755658, -2.3681294933425394, 0.46449024233003117),
        (2.3005307116270983, -1.6111665557258408, 0.3833374427545273),
        (1.8631210546382593, -1.2042160621002727, 0.3421879560523383),
        (1.8382572152247512, -1.1779263289537742, 0.3396513038637379),
        (1.8749999923301852, -1.2499999836060613, 0.374999991275876),
    ),
}


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_seq(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def resolve_ns_coefficients(value: Any, name: str = 'ns_coefficients') -> Coefficients:
    """A preset name, one ``(a, b, c)`` triple or a sequence of triples, as a tuple of float triples."""
    if isinstance(value, str):
        if value not in NS_COEFFICIENTS:
            raise ValueError(
                f'Invalid {name}: {value!r}, expected one of {sorted(NS_COEFFICIENTS)} or (a, b, c) triples'
            )
        return NS_COEFFICIENTS[value]
    if _is_seq(value) and len(value) == 3 and all(_is_real(v) for v in value):
        value = [value]
    if not _is_seq(value) or not value:
        raise ValueError(
            f'Invalid {name}: {value!r}, expected a preset name, an (a, b, c) triple or a non-empty sequence of triples'
        )
    out = []
    for item in value:
        if not (_is_seq(item) and len(item) == 3 and all(_is_real(v) for v in item)):
            raise ValueError(f'Invalid {name}: item {item!r} is not an (a, b, c) triple of real numbers')
        out.append((float(item[0]), float(item[1]), float(item[2])))
    return tuple(out)


def ns_coefficient_sequence(coefficients: Coefficients, steps: int) -> Coefficients:
    """The triple used at each of ``steps`` iterations: truncated, or padded with the last triple (timm's rule)."""
    coefficients = tuple(coefficients)
    if steps <= len(coefficients):
        return coefficients[:steps]
    return coefficients + (coefficients[-1],) * (steps - len(coefficients))


def _is_const(value: Any, const: float) -> bool:
    """``value == const`` for a concrete number; False for a traced one (the general path is taken)."""
    return not isinstance(value, jax.Array) and value == const


def _fused_mm(alpha: float, a: jax.Array, b: jax.Array, beta: float, c: Any, dtype) -> jax.Array:
    """``beta * c + alpha * a @ b`` accumulated in float32 and rounded once to ``dtype`` (torch's addmm)."""
    prod = jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
    out = prod if _is_const(alpha, 1.0) else jnp.float32(alpha) * prod
    if c is not None and not _is_const(beta, 0.0):
        out = out + jnp.float32(beta) * c.astype(jnp.float32)
    return out.astype(dtype)


def orthogonalize_via_newton_schulz(
    g: jax.Array,
    steps: int = 5,
    coefficients: Any = 'quintic',
    eps: float = 1e-7,
    safety_factor: float = 1.0,
    dtype: Any = jnp.bfloat16,
    scale_eps: bool = False,
) -> jax.Array:
    r"""Approximate the polar factor :math:`UV^\top` of ``g = U S V^\top`` (batched over leading dims), in ``dtype``.

    .. math::
        X_0 = G / \max(s\,\|G\|_F, \epsilon), \qquad
        A = X X^\top, \quad X \leftarrow a X + (b A + c A^2) X

    iterated with the ``(a, b, c)`` of each step (see
    :func:`ns_coefficient_sequence`), on the transpose when ``g`` has more
    rows than columns. With ``scale_eps`` the floor becomes a damping term,
    :math:`s\|G\|_F + \epsilon\sqrt{n/m}` for ``g`` of shape ``(m, n)``.
    Matrix products accumulate in float32; each of the three fused products
    per step is rounded once to ``dtype`` (timm: bfloat16), like torch's
    ``addmm``/``baddbmm``. Returns an array of ``dtype``.
    """
    if g.ndim < 2:
        raise ValueError(f'Invalid g: shape {g.shape}, expected a matrix or a batch of matrices')
    dtype = jnp.dtype(dtype)
    triples = resolve_ns_coefficients(coefficients, 'coefficients')
    m, n = g.shape[-2:]
    if scale_eps:
        eps = eps * (n / m) ** 0.5
    x = g.astype(dtype)
    transposed = m > n
    if transposed:
        x = jnp.swapaxes(x, -1, -2)
    x32 = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(x32 * x32, axis=(-2, -1), keepdims=True)).astype(dtype)
    if not _is_const(safety_factor, 1.0):
        norm = (norm.astype(jnp.float32) * jnp.float32(safety_factor)).astype(dtype)
    if scale_eps:
        denom = (norm.astype(jnp.float32) + jnp.float32(eps)).astype(dtype)
    else:
        denom = jnp.maximum(norm.astype(jnp.float32), jnp.float32(eps)).astype(dtype)
    x = (x32 / denom.astype(jnp.float32)).astype(dtype)
    # materialized before the products: XLA:CPU would otherwise fold an incoming transpose into the first
    # product as a (0, 0)-contracting bfloat16 dot, which its runtime rejects (UNIMPLEMENTED in DotThunk)
    x = cpu_fence(x)

    def iterate(x, a, b, c):
        gram = _fused_mm(1.0, x, jnp.swapaxes(x, -1, -2), 0.0, None, dtype)
        poly = _fused_mm(c, gram, gram, b, gram, dtype)
        return _fused_mm(1.0, poly, x, a, x, dtype)

    if isinstance(steps, jax.Array):
        # a traced count (optax.inject_hyperparams): a loop reading each step's triple from a table,
        # the last one repeated past its end as in ns_coefficient_sequence
        table = jnp.asarray(triples, jnp.float32)
        x = jax.lax.fori_loop(0, steps, lambda i, x: iterate(x, *table[jnp.minimum(i, len(triples) - 1)]), x)
    else:
        for a, b, c in ns_coefficient_sequence(triples, int(steps)):
            x = iterate(x, a, b, c)
    if transposed:
        x = jnp.swapaxes(x, -1, -2)
    return x


# ---- timm Muon's view of a tensor as matrices (on its torch layout: Linear (out, in), conv (O, I, *k)) ----


def orthogonalizable_shape(shape: Sequence[int], min_dim_size: int = 4, max_aspect_ratio: float = 128.0) -> bool:
    """timm's shape rule on a torch-layout shape: a matrix (after flattening trailing dims) that is not degenerate."""
    if len(shape) < 2 or sum(1 for s in shape if s > 1) < 2:
        return False
    if shape[0] == 1 or shape[1] == 1:  # position embeddings (1, seq, dim), depthwise convs (out, 1, kh, kw)
        return False
    dims = (shape[0], math.prod(shape[1:])) if len(shape) >= 3 else tuple(shape)
    if min(dims) < min_dim_size:
        return False
    return max(dims) / min(dims) <= max_aspect_ratio


def _to_matrix_batch(u: jax.Array, conv_mode: str) -> jax.Array:
    """A torch-layout tensor as a batch of matrices ``(batch, m, n)`` (timm's ``reshape_for_muon``): >2-d
    tensors flattened to ``(out, in * prod(kernel))`` (``'flatten'``) or one ``(out, in)`` matrix per tap."""
    if u.ndim == 2:
        return u[None]
    if conv_mode == 'flatten':
        return u.reshape(1, u.shape[0], -1)
    return jnp.transpose(u.reshape(u.shape[0], u.shape[1], -1), (2, 0, 1))


def _from_matrix_batch(x: jax.Array, shape: Tuple[int, ...], conv_mode: str) -> jax.Array:
    """Inverse of :func:`_to_matrix_batch`: the batch back as a torch-layout tensor of ``shape``."""
    if len(shape) >= 3 and conv_mode == 'batched':
        return jnp.transpose(x, (1, 2, 0)).reshape(shape)
    return x.reshape(shape)


def orthogonalize_tensors(tensors: Sequence[jax.Array], conv_mode: str, *args: Any, **kwargs: Any) -> List[jax.Array]:
    """Each torch-layout tensor orthogonalised as timm's Muon does (as matrices, see :func:`_to_matrix_batch`),
    returned in its own shape and in the Newton–Schulz dtype; ``args``/``kwargs`` are those of
    :func:`orthogonalize_via_newton_schulz` after ``g``. One Newton–Schulz call per distinct matrix shape
    ``(m, n)``, batched over the tensors (and kernel taps) that share it."""
    mats = [_to_matrix_batch(u, conv_mode) for u in tensors]
    by_shape: Dict[Tuple[int, ...], List[int]] = {}
    for i, mat in enumerate(mats):
        by_shape.setdefault(mat.shape[1:], []).append(i)
    ortho: List[Any] = [None] * len(mats)
    for idx in by_shape.values():
        stacked = jnp.concatenate([mats[i] for i in idx], axis=0) if len(idx) > 1 else mats[idx[0]]
        out = orthogonalize_via_newton_schulz(stacked, *args, **kwargs)
        splits = np.cumsum([mats[i].shape[0] for i in idx])[:-1]
        for i, part in zip(idx, jnp.split(out, splits, axis=0) if len(idx) > 1 else [out]):
            ortho[i] = part
    return [_from_matrix_batch(o, u.shape, conv_mode) for o, u in zip(ortho, tensors)]


def muon_lr_adjustment(
    shape: Tuple[int, ...],
    adjust_lr_fn: Optional[str],
    algo: str,
    conv_mode: str = 'flatten',
    normalize_spatial: bool = True,
) -> Tuple[float, bool]:
    """timm's lr multiplier for a torch-layout tensor of ``shape`` (from its matrix-batch shape, and
    ``prod(kernel) ** -0.5`` for batched kernels with ``normalize_spatial``), and whether AdaMuon RMS-normalises."""
    shape = tuple(shape)
    if len(shape) < 3:
        mat_shape = shape
    elif conv_mode == 'flatten':
        mat_shape = (1, shape[0], math.prod(shape[1:]))
    else:  # batched: one (out, in) matrix per kernel tap
        mat_shape = (math.prod(shape[2:]), shape[0], shape[1])
    scale, rms_norm = _matrix_lr_adjustment(mat_shape, adjust_lr_fn, algo)
    if conv_mode == 'batched' and len(shape) >= 3 and normalize_spatial:
        scale *= math.prod(shape[2:]) ** -0.5
    return scale, rms_norm


def _matrix_lr_adjustment(mat_shape: Tuple[int, ...], adjust_lr_fn: Optional[str], algo: str) -> Tuple[float, bool]:
    """``adjust_lr_fn``'s multiplier for the orthogonalised matrix shape (batch included for >2-d tensors)."""
    if not adjust_lr_fn:
        return 1.0, False
    out_chs, in_chs = mat_shape[-2], mat_shape[-1]
    if algo == 'adamuon':
        if adjust_lr_fn == 'match_rms_adamw':
            return 0.2 * math.prod(mat_shape) ** 0.5, True
        if adjust_lr_fn == 'rms_to_rms':
            return (out_chs / in_chs) ** 0.5, False
        return in_chs**-0.5, False  # rsqrt_in
    if adjust_lr_fn == 'original':
        return max(1, out_chs / in_chs) ** 0.5, False
    if adjust_lr_fn == 'match_rms_adamw':
        return 0.2 * max(out_chs, in_chs) ** 0.5, False
    return (out_chs / in_chs) ** 0.5, False  # rms_to_rms
