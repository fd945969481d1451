"""The parity problem: one mixed-layout tree and one loss, the same numbers on the timm and the jax side.

* The tree mixes PyTorch layouts: conv ``(O, I, kH, kW)``, linear ``(out, in)``,
  biases, norm scales, a 3-d embedding and a 1-element tensor, so every shape
  rule (factoring, orthogonalization, no decay on 1-d leaves) is exercised.
* Both sides start from the same float32 values and each step computes the
  gradient of the same loss at its *own* current params
  ``L_t = sum(0.5*A*p^2 + (B + D*sin(0.7*t))*p + 0.025*p^4)``, so any deviation
  compounds; the drifting linear term keeps the gradients away from zero (a
  converged run would make sign-based rules such as caution compare noise).
  The Hessian of ``L`` is diagonal (``A + 0.3 p^2``), which makes Hutchinson's
  estimate exact for AdaHessian whatever the random probe.

Flat dicts keyed by dotted names (``'conv.weight'``) are the common currency:
timm's module is built from them, ours is their nested tree.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_timm.optim import named_leaves

__all__ = [
    'SHAPES',
    'DEFAULT_LR',
    'DEFAULT_STEPS',
    'make_arrays',
    'to_tree',
    'from_tree',
    'drift',
    'jax_loss',
    'torch_loss',
]

SHAPES: Dict[str, tuple] = {
    'conv.weight': (8, 4, 3, 3),
    'conv.bias': (8,),
    'norm.weight': (8,),
    'norm.bias': (8,),
    'fc.weight': (6, 32),
    'fc.bias': (6,),
    'pos_embed': (1, 4, 16),
    'gamma': (1,),
}
DEFAULT_LR = 1e-2  # large enough to move the params well past the metric's noise in DEFAULT_STEPS steps
DEFAULT_STEPS = 30

Arrays = Dict[str, np.ndarray]


def make_arrays(seed: int = 0, shapes: Optional[Mapping[str, tuple]] = None) -> Tuple[Arrays, Arrays, Arrays, Arrays]:
    """``(init, A, B, D)``: the starting params and the loss coefficients (curvature A, linear terms B and D),
    float32 numpy, drawn from ``seed``. Norm scales start around 1, everything else around 0."""
    shapes = SHAPES if shapes is None else shapes
    rng = np.random.default_rng(seed)
    init, a, b, d = {}, {}, {}, {}
    for name, shape in shapes.items():
        base = 1.0 if name.startswith('norm.weight') else 0.0
        init[name] = (base + 0.5 * rng.standard_normal(shape)).astype(np.float32)
        a[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        b[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
        d[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return init, a, b, d


def to_tree(flat: Mapping[str, Any]) -> Dict[str, Any]:
    """{'conv.weight': x} -> {'conv': {'weight': x}} (names round-trip through jt's leaf naming)."""
    tree: Dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def from_tree(tree: Any) -> Arrays:
    """A params tree back to ``{dotted name: numpy array}`` (the inverse of :func:`to_tree`)."""
    return {name: np.asarray(leaf) for name, leaf in named_leaves(tree)}


def drift(t: int) -> np.float32:
    """The time-varying factor ``sin(0.7 t)`` of the loss's linear term at step ``t``."""
    return np.float32(np.sin(0.7 * t))


def jax_loss(params: Any, a: Any, b: Any, d: Any, s: Any) -> jax.Array:
    """The loss on our side: ``params``, ``a``, ``b``, ``d`` are trees of the same structure, ``s`` the drift."""

    def leaf(p, ai, bi, di):
        return jnp.sum(0.5 * ai * p * p + (bi + di * s) * p + 0.025 * p**4)

    return cast(jax.Array, sum(jax.tree.leaves(jax.tree.map(leaf, params, a, b, d))))  # of arrays: an array


def torch_loss(
    named: Mapping[str, Any], a: Mapping[str, Any], b: Mapping[str, Any], d: Mapping[str, Any], s: float
) -> Any:
    """The same loss on timm's side: ``named`` maps dotted names to torch parameters, ``a``/``b``/``d`` to torch
    tensors, ``s`` is the drift as a Python float."""
    return sum((0.5 * a[k] * p * p + (b[k] + d[k] * s) * p + 0.025 * p**4).sum() for k, p in named.items())
