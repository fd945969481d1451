"""TensorFlow-style RMSprop: timm's ``RMSpropTF`` (``rmsproptf``, ``rmsproptfw``, ``rmsproptfc``, ``crmsproptf``).

References: Hinton, Srivastava & Swersky, 2012, "Neural Networks for Machine
Learning", lecture 6e (RMSprop); Graves, 2013, "Generating Sequences With
Recurrent Neural Networks" (arXiv:1308.0850, the centered form); Liang et al.,
2024, "Cautious Optimizers" (arXiv:2411.16085); corrected decay
``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import check_bool, check_lr, check_range, check_weight_decay
from ..transforms import add_decoupled_weight_decay, add_l2_weight_decay, cautious, cpu_fence, l2_decayed
from ..transforms import require_params, resolve_max_lr, scale_by_learning_rate, tree_any_nonzero, with_state_dtype
from ._registry import OptimInfo

__all__ = ['rmsprop_tf']


def _rms_with_l2(
    normalise: optax.GradientTransformation,
    rest: list,
    weight_decay: Any,
    centered: bool,
    eps: float,
) -> optax.GradientTransformation:
    """``chain(add_l2_weight_decay(weight_decay), normalise, *rest)`` with the L2 sum computed twice.

    Same state (``normalise``'s, then each of ``rest``'s; ``normalise``'s alone when ``rest`` is empty)
    and the same numbers as the chain; the
    difference is where XLA:CPU puts ``g + wd*p``. Chained, the sum feeds both the second-moment loop and
    the direction loop and is written to a full-size temporary (no multi-output fusion). Here
    ``normalise`` (optax's ``scale_by_rms``/``scale_by_stddev`` with ``eps_in_sqrt``) updates its
    moments from one copy of the sum, and after :func:`cpu_fence` the direction recomputes the sum and
    scales it by the *stored* moments with optax's formula, ``g * rsqrt(nu - mu**2 + eps)``.
    """
    inner = optax.chain(normalise, *rest) if rest else normalise

    def update_fn(updates, state, params=None):
        require_params(params, 'RMSpropTF with weight_decay')

        def l2(g_tree, p_tree):
            return l2_decayed(g_tree, p_tree, weight_decay)

        if not rest:
            state = (state,)
        _, moments = normalise.update(l2(updates, params), state[0])
        moments, updates, params = cpu_fence((moments, updates, params))  # stored before the sum is recomputed
        mus = moments.mu if centered else jax.tree.map(lambda _: None, updates)

        def scaled(g, nu, mu):
            if g is None:
                return None
            var = nu if mu is None else nu - jnp.real(jnp.conj(mu) * mu)
            return jax.lax.rsqrt(var + eps) * g

        out = jax.tree.map(scaled, l2(updates, params), moments.nu, mus, is_leaf=lambda x: x is None)
        new_state = [moments]
        for tx, s in zip(rest, state[1:]):
            out, s = tx.update(out, s, params)
            new_state.append(s)
        return out, tuple(new_state) if rest else moments

    return optax.GradientTransformation(inner.init, update_fn)


def rmsprop_tf(
    learning_rate: Any = 1e-2,
    alpha: float = 0.9,
    eps: float = 1e-10,
    weight_decay: Any = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    lr_in_momentum: bool = True,
    caution: bool = False,
    *,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``RMSpropTF``: RMSprop with TensorFlow's epsilon, initial state and momentum.

    .. math::
        v_t &= v_{t-1} + (1-\alpha)(g_t^2 - v_{t-1}), \quad v_0 = 1 \\
        \bar g_t &= \bar g_{t-1} + (1-\alpha)(g_t - \bar g_{t-1}) \quad \text{(centered)} \\
        d_t &= g_t / \sqrt{v_t - \bar g_t^2 + \epsilon} \\
        b_t &= \mu b_{t-1} + \eta_t d_t, \quad \theta_t = \theta_{t-1} - b_t
            \quad \text{(lr_in_momentum)} \\
        b_t &= \mu b_{t-1} + d_t, \quad \theta_t = \theta_{t-1} - \eta_t b_t
            \quad \text{(otherwise)}

    (:math:`\bar g \equiv 0` unless ``centered``; without momentum
    :math:`\theta_t = \theta_{t-1} - \eta_t d_t`). Weight decay is L2
    (:math:`g \leftarrow g + \lambda\theta`) or, with ``decoupled_decay``,
    :math:`\theta \leftarrow \theta(1 - \eta_t\lambda)`
    (:math:`1 - \lambda\eta_t^2/\eta_{max}` with ``corrected_weight_decay``).

    Args:
        learning_rate, lr_scale, max_lr: as for every alias (see :mod:`jaxopt_timm.optim`).
        alpha: smoothing constant of the squared-gradient average, in [0, 1].
        eps: added *inside* the square root (TF style).
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        momentum: :math:`\mu` in [0, 1] (timm's factory passes 0.9; timm accepts any value >= 0, but above 1
            the buffer grows like :math:`\mu^t` and overflows).
        centered: normalise by the variance estimate instead of the raw second moment.
        decoupled_decay: decay the weights directly instead of an L2 gradient term.
        corrected_weight_decay: decoupled decay scaled by :math:`\eta_t^2/\eta_{max}` (needs ``decoupled_decay``).
        lr_in_momentum: accumulate the lr-scaled step in the momentum buffer
            (TF); with a schedule the buffer then remembers past lrs.
        caution: mask the momentum buffer's step by its sign agreement with the gradient.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.rmsprop_tf(1e-2, momentum=0.9, weight_decay=1e-5)

    Notes:
        Unlike ``torch.optim.RMSprop`` (and Hinton's slides) the second moment
        starts at one, not zero, and ``eps`` sits inside the root, which is what
        TF-trained recipes (EfficientNet, MobileNet) were tuned with. As in
        timm, ``caution`` only acts when ``momentum > 0``; the masked buffer is
        used for the step but the stored buffer stays unmasked. The state
        follows :func:`jaxopt_timm.transforms.state_dtype` (the params' dtype;
        float32 for float16 params, whose range cannot hold the second moment
        of small gradients).
    """
    check_lr(learning_rate)
    check_range('alpha', alpha, 0.0, 1.0)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    check_range('momentum', momentum, 0.0, 1.0)  # above 1 the buffer grows like momentum**t (torch's overflows)
    for name, value in (
        ('centered', centered),
        ('decoupled_decay', decoupled_decay),
        ('corrected_weight_decay', corrected_weight_decay),
        ('lr_in_momentum', lr_in_momentum),
        ('caution', caution),
    ):
        check_bool(name, value)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled_decay)

    # TF's `v += (1-alpha)*(g^2 - v)` is optax's `alpha*v + (1-alpha)*g^2` up to rounding; eps inside the
    # root and v_0 = 1 are optax's `eps_in_sqrt=True, initial_scale=1`. The optax pieces keep state in their
    # inputs' dtype, so with_state_dtype feeds them the policy's dtype (the identity but for float16 leaves).
    rms = optax.scale_by_stddev if centered else optax.scale_by_rms
    normalise = rms(decay=alpha, eps=eps, initial_scale=1.0, eps_in_sqrt=True)
    l2 = 0.0 if decoupled_decay else weight_decay
    # caution's mask compares with the decayed gradient, so there the L2 term stays in front of the direction;
    # elsewhere it is folded in (_rms_with_l2: no full-size temporary for the sum on XLA:CPU)
    fold = not caution and tree_any_nonzero(l2)

    def direction_of(*rest):
        return with_state_dtype(
            _rms_with_l2(normalise, list(rest), l2, centered, eps)
            if fold
            else optax.chain(normalise, *rest)
            if rest
            else normalise
        )

    # timm's `momentum > 0`; an array momentum (inject_hyperparams) counts as on, so init and update agree.
    if isinstance(momentum, jax.Array) or momentum > 0:
        if lr_in_momentum:
            # TF folds the (scheduled, per-group) lr into the buffer before the momentum sum.
            direction = direction_of(
                scale_by_learning_rate(learning_rate, lr_scale, flip_sign=False), optax.trace(momentum)
            )
            step = [cautious(direction) if caution else direction, optax.scale(-1.0)]
        else:
            direction = direction_of(optax.trace(momentum))
            step = [cautious(direction) if caution else direction, scale_by_learning_rate(learning_rate, lr_scale)]
    else:
        step = [direction_of(), scale_by_learning_rate(learning_rate, lr_scale)]
    return optax.with_extra_args_support(
        optax.chain(
            add_l2_weight_decay(0.0 if fold else l2),
            *step,
            add_decoupled_weight_decay(weight_decay if decoupled_decay else 0.0, learning_rate, lr_scale, max_lr),
        )
    )


_record = functools.partial(
    OptimInfo, alias=rmsprop_tf, timm_class='timm.optim.RMSpropTF', has_momentum=True, packing='packed', default_lr=0.01
)

OPTIMIZERS = (
    _record(
        name='rmsproptf',
        description='TensorFlow-style RMSprop implementation, Root Mean Square Propagation',
        defaults={'alpha': 0.9},
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.chain(
            optax.add_decayed_weights(wd), optax.rmsprop(lr, decay=0.9, eps=1e-3, initial_scale=1.0, momentum=0.9)
        ),
    ),
    _record(
        name='rmsproptfw',
        description='TensorFlow-style RMSprop with decoupled weight decay',
        defaults={'alpha': 0.9, 'decoupled_decay': True},
    ),
    _record(
        name='rmsproptfc',
        description='RMSprop TF-style with corrected decoupled weight decay (lr²/max_lr scaling)',
        defaults={'alpha': 0.9, 'decoupled_decay': True, 'corrected_weight_decay': True},
    ),
    _record(
        name='crmsproptf', description='Cautious TensorFlow-style RMSprop', defaults={'alpha': 0.9, 'caution': True}
    ),
)
