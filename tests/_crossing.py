"""Runs that cross between timm and jaxopt_timm mid-training, on the parity problem.

``cross(name, n, m, direction)``: the reference runs ``n + m`` steps alone;
the crossing run makes its first ``n`` steps on one side, converts the
optimizer state (``jt.interop``) and the params, and makes the last ``m`` on
the other. Both see the same gradients (the parity loss at their own params,
step ``t``'s drift), so the crossing run must end where the reference's does,
within the parity tolerance.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxopt_timm.transforms import from_torch_layout, to_torch_layout

import jaxopt_timm as jt
from jaxopt_timm.parity import (
    ParityResult, deviation, drift, ensure_reference, from_tree, jax_loss, load_timm, make_arrays,
    prepare_reference, reference_mode, to_tree, torch_loss, torch_module)

class TimmRun:
    """timm's optimizer on a torch module holding the parity problem's params, stepped one update at a time."""

    def __init__(self, name, init, coeffs, kwargs, layout='torch'):
        import torch
        timm_optim, _ = load_timm()
        ensure_reference(name)
        self.torch = torch
        self.info = jt.get_optimizer_info(name)
        self.module = torch_module(init)
        kwargs = dict(kwargs)
        if 'group_matcher' in kwargs:  # timm reads these from the model
            matcher = kwargs.pop('group_matcher')
            self.module.group_matcher = lambda coarse=False: matcher
        if 'no_weight_decay_list' in kwargs:
            listed = set(kwargs.pop('no_weight_decay_list'))
            self.module.no_weight_decay = lambda: listed
        self.named = dict(self.module.named_parameters())
        self.coeffs = [{k: torch.tensor(v) for k, v in c.items()} for c in coeffs]
        self.opt = prepare_reference(timm_optim.create_optimizer_v2(self.module, name, **kwargs))
        self.lr = kwargs.get('lr')

    def step(self, t):
        a, b, d = self.coeffs
        self.opt.zero_grad(set_to_none=True)
        for group in self.opt.param_groups:
            if 'lr_scale' in group:  # as timm's schedulers do (its optimizers alone ignore lr_scale)
                group['lr'] = self.lr * group['lr_scale']
        s = float(drift(t))
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Using backward', category=UserWarning)
            torch_loss(self.named, a, b, d, s).backward(create_graph=self.info.second_order)
            if self.info.grad_fn:
                self.opt.step(lambda: torch_loss(self.named, a, b, d, s).backward())
            else:
                self.opt.step()

    def params(self):
        return {k: p.detach().numpy().copy() for k, p in self.named.items()}

    def set_params(self, flat):
        with self.torch.no_grad():
            for k, p in self.named.items():
                p.copy_(self.torch.tensor(flat[k]))


def jax_steps(tx, params, state, coeffs, start, count, second_order=False, grad_fn=False):
    """``count`` jitted updates of ours from step ``start``."""
    ja, jb, jd = (to_tree({k: jnp.asarray(v) for k, v in c.items()}) for c in coeffs)

    @jax.jit
    def step(params, state, s):
        loss_fn = lambda p: jax_loss(p, ja, jb, jd, s)  # noqa: E731
        grads = jax.grad(loss_fn)(params)
        extra = {}
        if second_order:
            extra['hvp_fn'] = lambda v: jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]
        if grad_fn:
            extra['grad_fn'] = jax.grad(loss_fn)
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    for t in range(start, start + count):
        params, state = step(params, state, jnp.asarray(drift(t)))
    return params, state


def cross(name, n=5, m=5, directions=('from_timm', 'to_timm'), seed=0, layout='torch', shapes=None, **kwargs):
    """``{direction: ParityResult}``: each crossing run against the reference's uninterrupted ``n + m`` steps.

    ``layout='flax'``: our side holds the params in Flax layouts (Dense ``(in, out)``, conv ``(*k, I, O)``);
    ``shapes``: another tree than the parity problem's."""
    kwargs = {'lr': 1e-2, 'weight_decay': 0.01, **kwargs}
    timm_kwargs, our_kwargs, context = reference_mode(name, kwargs)
    init, a, b, d = make_arrays(seed, shapes)
    coeffs = (a, b, d)
    info = jt.get_optimizer_info(name)
    ours_kwargs = {**timm_kwargs, **our_kwargs}
    to_ours = lambda flat: to_tree({k: jnp.asarray(from_torch_layout(v, layout)) for k, v in flat.items()})  # noqa: E731
    to_theirs = lambda tree: {k: np.asarray(to_torch_layout(v, layout)) for k, v in from_tree(tree).items()}  # noqa: E731
    results = {}
    with context:
        ref = TimmRun(name, init, coeffs, timm_kwargs)
        names = [n for n, _ in ref.module.named_parameters()]  # a module's own params come before its children's
        for t in range(n + m):
            ref.step(t)
        theirs = ref.params()
        jcoeffs = [{k: np.asarray(from_torch_layout(v, layout)) for k, v in c.items()} for c in coeffs]
        for direction in directions:
            if direction == 'from_timm':
                run = TimmRun(name, init, coeffs, timm_kwargs)
                for t in range(n):
                    run.step(t)
                params = to_ours(run.params())
                state = jt.interop.from_timm(run.opt.state_dict(), params, names, name, layout=layout, **ours_kwargs)
                tx = _factory(params, name, layout, ours_kwargs)
                params, state = jax_steps(tx, params, state, jcoeffs, n, m, info.second_order, info.grad_fn)
                ours = to_theirs(params)
            else:
                params = to_ours(init)
                tx = _factory(params, name, layout, ours_kwargs)
                params, state = jax_steps(tx, params, tx.init(params), jcoeffs, 0, n, info.second_order, info.grad_fn)
                sd = jt.interop.to_timm(state, params, names, name, layout=layout, **ours_kwargs)
                run = TimmRun(name, init, coeffs, timm_kwargs)
                run.set_params(to_theirs(params))
                run.opt.load_state_dict(sd)
                for t in range(n, n + m):
                    run.step(t)
                ours = run.params()
            rel, max_abs, disp = deviation(ours, theirs, init)
            results[direction] = ParityResult(rel, max_abs, disp, 1, ours, theirs, {})
    return results


def _factory(params, name, layout, kwargs):
    if jt.get_optimizer_info(name).layout_aware:
        kwargs = {**kwargs, 'layout': layout}
    return jt.create_optimizer_v2(params, name, **kwargs)
