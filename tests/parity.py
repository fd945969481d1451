"""Side-by-side harness: a timm (PyTorch, CPU) optimizer and ours on the same numbers.

* The tree mixes PyTorch layouts: conv ``(O, I, kH, kW)``, linear ``(out, in)``,
  biases, norm scales, a 3-d embedding and a 1-element tensor.
* Both sides start from the same float32 values and each step computes the
  gradient of the same loss at its *own* current params
  ``L_t = sum(0.5*A*p^2 + (B + D*sin(0.7*t))*p + 0.025*p^4)``, so any deviation
  compounds; the drifting linear term keeps the gradients away from zero (a
  converged run would make sign-based rules such as caution compare noise).
  The Hessian of ``L`` is diagonal (``A + 0.3 p^2``), which makes Hutchinson's
  estimate exact for AdaHessian whatever the random probe.
* Our whole step (gradient, update, apply) runs under ``jax.jit`` and must be
  traced exactly once.
* Metric: ``max |ours - timm|`` over all leaves, divided by the largest
  displacement ``max |timm_final - init|``; parity is ``<= 2e-4``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxopt_timm as jt
from jaxopt_timm.cli._parity import drift, to_tree  # the CLI's parity run uses the same problem
from timm_ref import load_timm, torch_module

TOL = 2e-4  # the parity bound: relative to the largest displacement
MIN_DISPLACEMENT = 1e-4  # a run that barely moves the params proves nothing

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


def make_arrays(seed: int = 0, shapes: Optional[Dict[str, tuple]] = None):
    """Initial params and the loss coefficients A (curvature), B and D (linear term), float32 numpy."""
    shapes = shapes or SHAPES
    rng = np.random.default_rng(seed)
    init, a, b, d = {}, {}, {}, {}
    for name, shape in shapes.items():
        base = 1.0 if name.startswith('norm.weight') else 0.0
        init[name] = (base + 0.5 * rng.standard_normal(shape)).astype(np.float32)
        a[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        b[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
        d[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return init, a, b, d


def from_tree(tree: Any) -> Dict[str, np.ndarray]:
    return {name: np.asarray(leaf) for name, leaf in jt.optim.named_leaves(tree)}


def jax_loss(params, a, b, d, s):
    def leaf(p, ai, bi, di):
        return jnp.sum(0.5 * ai * p * p + (bi + di * s) * p + 0.025 * p ** 4)
    return sum(jax.tree.leaves(jax.tree.map(leaf, params, a, b, d)))


@dataclasses.dataclass
class ParityResult:
    rel_err: float
    max_abs_err: float
    displacement: float
    traces: int
    ours: Dict[str, np.ndarray]
    theirs: Dict[str, np.ndarray]
    state: Any

    def check(self, tol: float = TOL) -> 'ParityResult':
        assert self.traces == 1, f'jitted step traced {self.traces} times, expected exactly once'
        assert self.displacement > MIN_DISPLACEMENT, f'params barely moved ({self.displacement:.3g}): vacuous test'
        assert self.rel_err <= tol, (
            f'parity error {self.rel_err:.3g} > {tol:g} (max abs {self.max_abs_err:.3g}, '
            f'displacement {self.displacement:.3g}); worst leaf: {self.worst_leaf()}')
        leaves = jax.tree.leaves(self.state)
        bad = [type(x).__name__ for x in leaves if not isinstance(x, jax.Array)]
        assert not bad, f'optimizer state holds non-array leaves: {bad}'
        return self

    def worst_leaf(self) -> str:
        errs = {k: float(np.max(np.abs(self.ours[k] - self.theirs[k]))) for k in self.ours}
        return max(errs, key=errs.get)


def run_parity(
        make_timm: Callable[[torch.nn.Module], torch.optim.Optimizer],
        make_ours: Callable[[Any], optax.GradientTransformation],
        steps: int = 30,
        seed: int = 0,
        second_order: bool = False,
        torch_lr: Optional[Callable[[int], float]] = None,
        shapes: Optional[Dict[str, tuple]] = None,
) -> ParityResult:
    """Run both optimizers ``steps`` times; ``torch_lr(t)`` (if given) sets each timm group's lr before step t
    (times the group's ``lr_scale``), as timm's schedulers do."""
    init, a, b, d = make_arrays(seed, shapes)

    # --- timm / torch side
    torch.manual_seed(seed)
    module = torch_module(init)
    named = dict(module.named_parameters())
    ta = {k: torch.tensor(v) for k, v in a.items()}
    tb = {k: torch.tensor(v) for k, v in b.items()}
    td = {k: torch.tensor(v) for k, v in d.items()}
    opt = make_timm(module)
    for t in range(steps):
        if torch_lr is not None:
            for group in opt.param_groups:
                group['lr'] = float(torch_lr(t)) * group.get('lr_scale', 1.0)
        opt.zero_grad(set_to_none=True)
        s = float(drift(t))
        loss = sum((0.5 * ta[k] * p * p + (tb[k] + td[k] * s) * p + 0.025 * p ** 4).sum() for k, p in named.items())
        loss.backward(create_graph=second_order)
        opt.step()
    theirs = {k: p.detach().numpy().copy() for k, p in named.items()}

    # --- ours, whole step under jit
    params = to_tree({k: jnp.asarray(v) for k, v in init.items()})
    ja, jb, jd = (to_tree({k: jnp.asarray(v) for k, v in c.items()}) for c in (a, b, d))
    tx = make_ours(params)
    state = tx.init(params)
    traces = [0]

    def step(params, state, s):
        traces[0] += 1
        loss_fn = lambda p: jax_loss(p, ja, jb, jd, s)  # noqa: E731
        grads = jax.grad(loss_fn)(params)
        extra = {}
        if second_order:
            extra['hvp_fn'] = lambda v: jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step)
    for t in range(steps):
        params, state = step(params, state, jnp.asarray(drift(t)))
    ours = from_tree(params)

    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    max_abs = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours)
    disp = max(float(np.max(np.abs(theirs[k] - init[k]))) for k in ours)
    return ParityResult(max_abs / max(disp, 1e-30), max_abs, disp, traces[0], ours, theirs, state)


def factory_parity(name: str, steps: int = 30, seed: int = 0, ours_only: Optional[Dict[str, Any]] = None,
                   **kwargs) -> ParityResult:
    """timm's ``create_optimizer_v2(module, name, **kwargs)`` against ours on the same tree (``ours_only``: extra
    arguments for our side, e.g. a dtype switch timm hard-codes)."""
    timm_optim, _ = load_timm()
    info = jt.get_optimizer_info(name.split('_')[-1])
    return run_parity(
        lambda m: timm_optim.create_optimizer_v2(m, name, **kwargs),
        lambda p: jt.create_optimizer_v2(p, name, **kwargs, **(ours_only or {})),
        steps=steps, seed=seed, second_order=info.second_order,
    )


def timm_muon_module():
    load_timm()
    import timm.optim.muon as timm_muon  # importable only once load_timm() has run
    return timm_muon


@contextlib.contextmanager
def timm_ns_float32():
    """timm's Muon with its Newton-Schulz iteration in float32 instead of its hard-coded bfloat16 (ours:
    ``ns_dtype='float32'``): then both sides do the same arithmetic and the 2e-4 bound applies."""
    mod = timm_muon_module()
    original = mod.zeropower_via_newtonschulz
    mod.zeropower_via_newtonschulz = functools.partial(original, dtype=torch.float32)
    try:
        yield
    finally:
        mod.zeropower_via_newtonschulz = original


@contextlib.contextmanager
def timm_kron_eager():
    """timm's Kron helpers without torch.compile (compiling them on CPU would dominate the test time)."""
    load_timm()
    import timm.optim.kron as timm_kron
    original = timm_kron.has_dynamo
    timm_kron.has_dynamo = False
    try:
        yield
    finally:
        timm_kron.has_dynamo = original


def alias_parity(timm_cls: Callable[..., torch.optim.Optimizer], our_alias: Callable[..., Any], steps: int = 30,
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
