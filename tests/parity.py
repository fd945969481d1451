"""Test-only parity helpers on top of :mod:`jaxopt_timm.parity`.

The problem, its loss, the reference modes, the metric and its tolerance and
the side-by-side loop are the package's (``jaxopt_timm.parity``: the command
line and the benchmarks use the same). What stays here is what only the tests
need: one timm/torch class against our alias, timm's factory on a module
carrying model attributes (param groups, layer decay), a scheduled lr on both
sides, a small ViT tree, the difference between two of our runs and a
torch-layout tree presented to an optimizer in Flax layout. The tests import
every shared name from the package, not from here.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_timm as jt
from jaxopt_timm.parity import ParityResult, load_timm, run_parity, timm_optim_module


def timm_optim():
    """timm's ``timm.optim`` package (its optimizer classes and registry)."""
    return load_timm()[0]


def timm_muon_module():
    """timm's ``timm.optim.muon`` (its routing rule and Newton-Schulz are tested against ours)."""
    return timm_optim_module('muon')


def alias_parity(timm_cls: Callable[..., Any], our_alias: Callable[..., Any], steps: int = 30,
                 seed: int = 0, lr: float = 1e-2, second_order: bool = False, **kwargs) -> ParityResult:
    """A timm/torch class on one param group against our alias, same kwargs (``lr`` -> ``learning_rate``)."""
    return run_parity(
        lambda m: timm_cls(m.parameters(), lr=lr, **kwargs),
        lambda p: our_alias(learning_rate=lr, **kwargs),
        steps=steps, seed=seed, second_order=second_order,
    )


VIT_SHAPES: Dict[str, tuple] = {
    # a small ViT in PyTorch layouts; keys are listed in the params tree's leaf order (sorted dict keys), which is
    # the order timm sees them in the torch module built from this dict (matters for auto layer grouping)
    'blocks.0.attn.bias': (12,),
    'blocks.0.attn.weight': (12, 4),
    'blocks.0.norm.weight': (4,),
    'blocks.1.attn.bias': (12,),
    'blocks.1.attn.weight': (12, 4),
    'blocks.1.norm.weight': (4,),
    'blocks.2.attn.bias': (12,),
    'blocks.2.attn.weight': (12, 4),
    'blocks.2.norm.weight': (4,),
    'cls_token': (1, 1, 4),
    'head.bias': (3,),
    'head.weight': (3, 4),
    'norm.weight': (4,),
    'patch_embed.proj.weight': (4, 3, 2, 2),
    'pos_embed': (1, 5, 4),
}
VIT_GROUP_MATCHER = {  # timm's VisionTransformer.group_matcher(coarse=False)
    'stem': r'^cls_token|pos_embed|patch_embed',
    'blocks': [(r'^blocks\.(\d+)', None), (r'^norm', (99999,))],
}


def grouped_factory_parity(name: str, shapes: Dict[str, tuple], *, lr: float = 1e-2, steps: int = 30,
                           model_attrs: Optional[Dict[str, Any]] = None, ours: Optional[Dict[str, Any]] = None,
                           schedule: Optional[Callable] = None, torch_lr: Optional[Callable[[int], float]] = None,
                           **kwargs) -> ParityResult:
    """timm's factory on a module carrying ``model_attrs`` (``group_matcher``, ``no_weight_decay``,
    ``pretrained_cfg``) against ours with the equivalent keyword arguments ``ours``; both with ``kwargs``.

    timm applies ``lr_scale`` only through its schedulers, so the torch loop sets each group's lr to
    ``lr * lr_scale`` before every step (a constant schedule), which is what ours does with a float lr.
    With ``schedule`` (ours) and ``torch_lr`` (timm's value before update ``t``), both run scheduled.
    """
    timm_optim, _ = load_timm()

    def make_timm(module):
        for key, value in (model_attrs or {}).items():
            setattr(module, key, value)
        return timm_optim.create_optimizer_v2(module, name, lr=lr, **kwargs)

    return run_parity(
        make_timm,
        lambda p: jt.create_optimizer_v2(p, name, lr=lr if schedule is None else schedule, **kwargs, **(ours or {})),
        steps=steps, shapes=shapes, torch_lr=torch_lr or (lambda t: lr))


def linear_decay(peak: float, steps: int) -> Callable:
    """A test schedule: linear decay from ``peak`` to ``0.1 * peak``, for Python ints (timm's side) and traced int32
    counts (ours; cast explicitly, as strict dtype promotion requires)."""
    return lambda t: peak * (1.0 - 0.9 * jnp.asarray(t, jnp.float32) / steps)


def scheduled_parity(timm_cls, our_alias, peak: float = 0.05, steps: int = 30, **kwargs) -> ParityResult:
    """A timm class whose lr follows :func:`linear_decay` (set before every step, as timm's schedulers do) against
    our alias given the same schedule; ``max_lr=peak`` is passed when corrected decay is on (timm snapshots the
    constructor lr)."""
    sched = linear_decay(peak, steps)
    max_lr = {'max_lr': peak} if kwargs.get('corrected_weight_decay') else {}
    return run_parity(
        lambda m: timm_cls(m.parameters(), lr=peak, **kwargs),
        lambda p: our_alias(sched, **kwargs, **max_lr),
        steps=steps, torch_lr=lambda t: float(sched(t)))


def trajectory_diff(a: ParityResult, b: ParityResult) -> float:
    """Largest difference between two of *our* final params: shows a switch really changes the run."""
    return max(float(np.max(np.abs(a.ours[k] - b.ours[k]))) for k in a.ours)


# Flax layouts: ours runs on the Flax-transposed tree, timm on the torch tree (Adafactor, AdaHessian).

def flax_axes(ndim):
    """Transpose taking a torch-layout tensor to Flax layout (Dense (in, out), conv (*k, I, O))."""
    if ndim < 2:
        return tuple(range(ndim))
    if ndim == 2:
        return (1, 0)
    return tuple(range(2, ndim)) + (1, 0)


def _to_flax(tree):
    return jax.tree.map(lambda x: jnp.transpose(x, flax_axes(x.ndim)), tree)


def _to_torch(tree):
    return jax.tree.map(lambda x: jnp.transpose(x, tuple(np.argsort(flax_axes(x.ndim)))), tree)


def in_flax_layout(inner):
    """Present a torch-layout tree to ``inner`` transposed to Flax layout (and its updates back)."""
    def init_fn(params):
        return inner.init(_to_flax(params))

    def update_fn(grads, state, params=None, **extra):
        if 'hvp_fn' in extra:
            hvp = extra['hvp_fn']
            extra = dict(extra, hvp_fn=lambda v: _to_flax(hvp(_to_torch(v))))
        updates, state = inner.update(_to_flax(grads), state, _to_flax(params), **extra)
        return _to_torch(updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def assert_close_leaves(got: Dict[str, Any], want: Dict[str, Any], tol: float, what: str) -> None:
    """Every leaf of ``want`` (flat dicts by name) within ``tol`` relative, and ``tol`` times the leaf's largest
    magnitude absolute (so leaves near zero are not held to a relative bound)."""
    for k in want:
        scale = max(float(np.max(np.abs(want[k]))), 1e-30)
        np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=tol * scale, err_msg=f'{what}: {k}')
