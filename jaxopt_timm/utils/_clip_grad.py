"""``timm.utils.dispatch_clip_grad`` as one optax transformation: timm's ``--clip-grad`` / ``--clip-mode``.

timm's train.py clips the gradients between ``backward()`` and
``optimizer.step()`` with ``dispatch_clip_grad(params, value, mode)``. Here
that is a ``GradientTransformation`` to put first in an ``optax.chain`` before
the optimizer. The three modes are timm's math, not optax's look-alikes
(see :mod:`jaxopt_timm.transforms._clip`): ``'norm'`` is torch's
``clip_grad_norm_`` (any p-norm, ``max_norm / (total + 1e-6)`` clamped to 1),
``'value'`` is ``clip_grad_value_``, and ``'agc'`` is timm's adaptive gradient
clipping with its unit-wise norms.

AGC needs to know which axis of a weight is its *output* unit. timm assumes
torch layouts (dim 0); a Flax model stores Dense kernels ``(in, out)`` and
conv kernels ``(kH, kW, I, O)``, so pass ``layout='flax'`` for it (the output
axis is then the last one). The other modes do not depend on the layout.
timm's train.py also leaves the classifier head out of AGC
(``model_parameters(model, exclude_head=True)``); do that with
``optax.masked`` when building the chain.
"""

from __future__ import annotations

import math
from typing import Any

import optax

from .._validate import _is_number, check_choice, check_range
from ..transforms._clip import adaptive_clip_grad, clip_grad_norm, clip_grad_value
from ..transforms._layout import LAYOUTS

__all__ = ['dispatch_clip_grad', 'CLIP_MODES']

CLIP_MODES = ('norm', 'value', 'agc')


def _check_norm_type(norm_type: Any) -> float:
    """A p-norm order in (0, inf]: ``inf`` (or the string ``'inf'``, which torch also accepts) is the max norm."""
    if isinstance(norm_type, str) and norm_type.strip().lower() in ('inf', '+inf'):
        return math.inf
    v = float(norm_type) if _is_number(norm_type) else math.nan
    if not v > 0:  # NaN, 0, negatives and non-numbers all fail this
        raise ValueError(f'Invalid norm_type: {norm_type!r}, expected a number in (0, inf] (inf: the max norm)')
    return v


def dispatch_clip_grad(
    value: float, mode: str = 'norm', norm_type: float = 2.0, layout: str = 'torch'
) -> optax.GradientTransformation:
    """timm's gradient clipping ``mode`` with ``value`` as a transformation of the gradients.

    Args:
        value: the max total norm (``'norm'``), the max ``|g|`` (``'value'``) or the clip factor (``'agc'``,
            timm's ``clip_factor``; AGC's ``eps`` is timm's 1e-3). Must be > 0.
        mode: ``'norm'``, ``'value'`` or ``'agc'``.
        norm_type: the p-norm of ``'norm'`` and ``'agc'``, in (0, inf]; ``float('inf')`` for the max norm.
        layout: where a weight's output unit is, for ``'agc'``: ``'torch'`` (dim 0) or ``'flax'`` (last axis).

    Returns:
        An ``optax.GradientTransformation`` (no state). ``'agc'`` needs ``update(grads, state, params)``.

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> tx = optax.chain(jt.dispatch_clip_grad(1.0, mode='norm'), jt.optim.sgd(0.1))
        >>> clip = jt.dispatch_clip_grad(1.0)
        >>> g, _ = clip.update({'w': jnp.array([3.0, 4.0])}, clip.init(None))
        >>> [round(float(x), 4) for x in g['w']]
        [0.6, 0.8]
    """
    check_range('value', value, 0.0, lo_open=True)
    check_choice('mode', mode, CLIP_MODES)
    check_choice('layout', layout, LAYOUTS)
    p = _check_norm_type(norm_type)
    value = float(value)
    if mode == 'norm':
        return clip_grad_norm(value, p)
    if mode == 'value':
        return clip_grad_value(value)
    return adaptive_clip_grad(value, eps=1e-3, norm_type=p, layout=layout)
