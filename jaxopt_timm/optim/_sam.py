"""SAM and ASAM (``pytorch-optimizer`` 4.1.0: ``SAM``): step with the gradient taken at a nearby worst point.

References: Foret et al., 2021, "Sharpness-Aware Minimization for Efficiently
Improving Generalization" (arXiv:2010.01412); Kwon et al., 2021, "ASAM:
Adaptive Sharpness-Aware Minimization" (arXiv:2102.11600).

Each step needs two gradients: ``g`` at the params, and ``g_adv`` at the
perturbed point ``p + e`` with ``e = rho * w * g / (||w g|| + perturb_eps)``
(``w = 1``, or ``|p|``-based with ``adaptive``: ASAM scales ``e`` by ``p^2`` and the
norm by ``|p|``; ``use_gc`` centralizes ``g`` first). The base optimizer then
steps the params with ``g_adv``. Here ``update`` receives ``g`` as usual and a
``grad_fn(params) -> grads`` extra argument, which it calls at ``p + e``
(as :func:`jaxopt_timm.optim.adahessian` takes ``hvp_fn``)::

    grad_fn = lambda p: jax.grad(loss)(p, batch)
    updates, state = tx.update(grad_fn(params), state, params, grad_fn=grad_fn)

Under sharded ``jit`` nothing changes: ``grad_fn`` sees globally sharded
params and returns global gradients, and the norm in ``e`` is over the whole
model. Under ``pmap`` give ``grad_fn`` the same ``jax.lax.pmean`` over the data
axis that the first gradient gets, so every device perturbs by the global
gradient, as the reference does after its all-reduce.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import check_bool, check_range
from ..transforms import require_params
from ._registry import OptimInfo, get_optimizer_info

__all__ = ['sam', 'sam_optimizer', 'SAMState']


class SAMState(NamedTuple):
    base_state: Any


def _centralized(g: jax.Array) -> jax.Array:
    """Gradient centralization: each output channel's gradient minus its mean (tensors of 2+ dims)."""
    if g.ndim <= 1:
        return g
    return g - jnp.mean(g, axis=tuple(range(1, g.ndim)), keepdims=True)


def sam(
    base_optimizer: optax.GradientTransformation,
    rho: float = 0.05,
    adaptive: bool = False,
    use_gc: bool = False,
    perturb_eps: float = 1e-12,
) -> optax.GradientTransformationExtraArgs:
    r"""``pytorch_optimizer.SAM``: ``base_optimizer`` stepped with the gradient at the perturbed point.

    Args:
        base_optimizer: any optax transformation (the factory builds it from ``base=<name>``).
        rho: radius of the perturbation, >= 0.
        adaptive: ASAM (perturbation scaled by the params' magnitude).
        use_gc: centralize the gradient before perturbing.
        perturb_eps: added to the gradient norm, >= 0.

    ``update(grads, state, params, grad_fn=...)``: ``grad_fn(params) -> grads`` is required (see the module
    docstring); other extra arguments go to the base optimizer.

    Example:
        >>> import jax, jax.numpy as jnp, jaxopt_timm as jt
        >>> loss = lambda p: jnp.sum((p['w'] - 1.0) ** 2)
        >>> params = {'w': jnp.zeros(3)}
        >>> tx = jt.optim.sam(jt.optim.sgd(0.1, momentum=0.9), rho=0.05)
        >>> state = tx.init(params)
        >>> grad_fn = jax.grad(loss)
        >>> updates, state = tx.update(grad_fn(params), state, params, grad_fn=grad_fn)
    """
    check_range('rho', rho, 0.0)
    check_bool('adaptive', adaptive)
    check_bool('use_gc', use_gc)
    check_range('perturb_eps', perturb_eps, 0.0)
    base = optax.with_extra_args_support(base_optimizer)

    def init_fn(params):
        return SAMState(base_state=base.init(params))

    def update_fn(updates, state, params=None, grad_fn: Optional[Callable[[Any], Any]] = None, **extra_args):
        require_params(params, 'sam')
        if grad_fn is None:
            raise ValueError(
                'sam needs grad_fn: call tx.update(grads, state, params, grad_fn=fn) with '
                'fn(params) -> grads (e.g. lambda p: jax.grad(loss)(p, batch))'
            )

        def up(x):  # float32 compute for low-precision leaves; a complex leaf stays complex
            return x if jnp.iscomplexobj(x) else x.astype(jnp.float32)

        def norm2(g, p):
            w = jnp.abs(up(g)) * jnp.abs(up(p)) if adaptive else jnp.abs(up(g))  # |g * |p|| = |g| |p|
            return jnp.sum(w * w)

        norm = jnp.sqrt(sum(jax.tree.leaves(jax.tree.map(norm2, updates, params)))) + jnp.float32(perturb_eps)
        scale = jnp.asarray(rho, jnp.float32) / norm

        def perturbed(g, p):
            g, p_up = up(g), up(p)
            g = _centralized(g) if use_gc else g
            e = g * scale.astype(g.dtype)
            if adaptive:
                e = p_up * p_up * e  # torch.pow(p, 2): p * p, also for a complex p
            return (p_up + e.astype(p_up.dtype)).astype(p.dtype)

        adv = grad_fn(jax.tree.map(perturbed, updates, params))
        new_updates, base_state = base.update(adv, state.base_state, params, **extra_args)
        return new_updates, SAMState(base_state=base_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sam_optimizer(
    learning_rate: Any = None,
    base: Any = 'sgd',
    rho: float = 0.05,
    adaptive: bool = False,
    use_gc: bool = False,
    perturb_eps: float = 1e-12,
    **base_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    """The registered ``sam``: :func:`sam` around ``base``, a registered optimizer's name (built by its alias with
    ``learning_rate``, its record's defaults and ``base_kwargs``, e.g. ``weight_decay=0.05``) or a
    transformation (built already, as ``create_optimizer_v2(params, 'sam', base='adamw', ...)`` builds it with the
    param groups and every argument SAM does not take).

    Example:
        >>> import jaxopt_timm as jt
        >>> tx = jt.optim.sam_optimizer(1e-3, base='adamw', rho=0.05, weight_decay=0.05)
    """
    # optax.inject_hyperparams binds the signature and passes the var-keyword dict back under its own name
    base_kwargs = {**base_kwargs.pop('base_kwargs', {}), **base_kwargs}
    if isinstance(base, str):
        info = get_optimizer_info(base)
        if info.base_argument is not None:
            raise ValueError(f'Invalid base: {base!r}, expected an optimizer for sam to wrap (not a wrapper)')
        kwargs = dict(info.defaults, **base_kwargs)
        if info.has_momentum:
            kwargs.setdefault('momentum', 0.9)  # timm's factory default, as create_optimizer_v2 passes it
        for flag, arg in (('has_eps', 'eps'), ('has_betas', 'betas')):
            if not getattr(info, flag):
                kwargs.pop(arg, None)  # dropped for a base without it, as the factory does
        if learning_rate is not None:
            kwargs['learning_rate'] = learning_rate
        base = info.alias(**kwargs)
    elif not isinstance(base, optax.GradientTransformation):
        raise ValueError(f'Invalid base: {base!r}, expected a registered optimizer name or an optax transformation')
    elif learning_rate is not None or base_kwargs:
        raise ValueError(
            'Invalid learning_rate / base arguments: base is a built transformation, which already '
            'holds its hyperparameters'
        )
    return sam(base, rho=rho, adaptive=adaptive, use_gc=use_gc, perturb_eps=perturb_eps)


OPTIMIZERS = (
    OptimInfo(
        name='sam',
        alias=sam_optimizer,
        source='pytorch-optimizer 4.1.0',
        timm_class='pytorch_optimizer.SAM',
        description='Sharpness-Aware Minimization around a base optimizer (ASAM with adaptive=True)',
        base_argument='base',
        grad_fn=True,
        defaults={'base': 'sgd'},
        benchmarked=True,
        has_eps=False,
        default_lr=0.05,
        complex_params=True,
    ),  # as its base: SAM's own step is complex-aware, the base converts or refuses
)
