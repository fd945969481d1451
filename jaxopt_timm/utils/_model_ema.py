"""timm's model EMA (``timm.utils.ModelEmaV2`` / ``ModelEmaV3``) as pure functions over a params tree.

timm keeps a deep copy of the model and, after every optimizer step, moves
each weight of the copy towards the model's: ``ema <- lerp(ema, w, 1 - decay)``.
Here the copy is a :class:`ModelEmaState` (a NamedTuple: it jits, shards,
and checkpoints with orbax like an optimizer state) and timm's
``ema.update(model, step)`` is ``state = ema.update(params, state, step)``::

    ema = jt.model_ema_v3(decay=0.9998, use_warmup=True)
    ema_state = ema.init(params)
    ...                                           # after each optimizer step, num_updates counting from 1
    ema_state = ema.update(params, ema_state, step=num_updates)
    evaluate(ema_state.params)

timm's behaviour, kept on purpose (each is what a timm recipe's numbers depend on):

* ``ModelEmaV3.get_decay(step)`` is 0 for ``step <= update_after_step + 1``: with timm's train.py, which passes
  ``step=num_updates`` counting from 1, the first update *copies* the weights rather than averaging them with
  the initial ones. ``step=None`` ignores ``update_after_step`` and the warmup: the decay is ``decay``.
* The warmup decay is ``1 - (1 + s / warmup_gamma) ** -warmup_power`` with ``s = step - update_after_step - 1``,
  clamped to ``[min_decay, decay]`` (``min_decay`` only matters with ``use_warmup``).
* V3 moves the weights with torch's ``lerp`` (two formulas, switching at weight 0.5); V2 computes
  ``decay * ema + (1 - decay) * w``. They agree to a rounding.
* Leaves that are not floating point (integer counters, booleans) are copied from the params, not averaged, as
  timm's V3 copies a model's integer buffers (V2 runs them through its float formula and truncates; here V2
  copies them too). Complex leaves are averaged (timm's ``is_floating_point()`` test would
  copy a complex weight; averaging its real and imaginary parts is what an EMA of it means).

The weight of each update, ``1 - decay``, is computed directly (``(1 + s/gamma) ** -power`` in float32 rather
than ``1 - decay`` of a float32 decay near 1), so a float32 run matches timm's float64 arithmetic to float32
rounding.

Low precision: ``ema_dtype`` keeps the average in another floating dtype than the params (timm's ``dtype``).
A bfloat16 average cannot take a plain EMA step: ``(1 - decay) * (w - ema)`` is mostly far below bfloat16's
resolution and rounds away, so the average stalls. As in timm (``stochastic_rounding=True``, the default), each
bfloat16 leaf is then updated in float32 and rounded to bfloat16 *stochastically*: up with probability equal to
the discarded fraction, so the average is unbiased and small steps accumulate in expectation. The state then
carries a PRNG key (``key``: an int seed or a key, default seed 0 as timm's ``stochastic_rounding_seed``),
split on every update; without a bfloat16 leaf ``key`` is ``None``. float16 averages are rounded to nearest
(timm offers nothing else for them: keep a float16 model's average in float32).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_bool, check_range, resolve_dtype
from ..transforms._tree import compute_dtype

__all__ = ['ModelEmaState', 'ModelEma', 'model_ema_v2', 'model_ema_v3']


class ModelEmaState(NamedTuple):
    """The averaged weights and what the next update needs.

    ``params``: the average, a tree like the params (``ema_dtype`` floating leaves, if given);
    ``count``: int32 number of updates applied (informational: the decay follows the ``step`` passed);
    ``key``: uint32 PRNG key data for stochastic rounding, ``None`` when no leaf is bfloat16 or it is off.
    """

    params: Any
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    key: Optional[jax.Array] = None


class ModelEma(NamedTuple):
    """``init(params) -> state``, ``update(params, state, step=None) -> state`` and ``get_decay(step)``
    (timm's decay for ``step``, a float32 scalar). Pure functions: jit them, ``step`` may be traced."""

    init: Callable[[Any], ModelEmaState]
    update: Callable[..., ModelEmaState]
    get_decay: Callable[[Any], jax.Array]


def _is_averaged(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _init_fn(ema_dtype: Optional[np.dtype], stochastic_rounding: bool, key: Any) -> Callable[[Any], ModelEmaState]:
    def init(params: Any) -> ModelEmaState:
        def copy(p):
            p = jnp.asarray(p)
            if ema_dtype is not None and jnp.issubdtype(p.dtype, jnp.floating):
                return p.astype(ema_dtype)
            return jnp.array(p, copy=True)  # the average must not alias the params a donating step may reuse

        ema_params = jax.tree.map(copy, params)
        rounds = stochastic_rounding and any(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(ema_params))
        return ModelEmaState(ema_params, jnp.zeros([], jnp.int32), _key_data(key) if rounds else None)

    return init


def _key_data(key: Any) -> jax.Array:
    """uint32 key data (what orbax stores as a plain array) from an int seed or a typed / raw key."""
    if key is None:
        key = 0  # timm's stochastic_rounding_seed default
    if isinstance(key, (int, np.integer)):
        return jax.random.PRNGKey(int(key))
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _check_key(key: Any) -> None:
    if key is None or isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if key is not None:
            check_range('key', key, 0, 2**32 - 1, integer=True)
        return
    arr = key if isinstance(key, jax.Array) else np.asarray(key)
    if not (jnp.issubdtype(arr.dtype, jax.dtypes.prng_key) or (arr.dtype == np.uint32 and arr.ndim == 1)):
        raise ValueError(
            f'Invalid key: {key!r}, expected None, an int seed in [0, 4294967295], a jax.random.key '
            'or a jax.random.PRNGKey'
        )


def _stochastic_round_bf16(x: jax.Array, key: jax.Array) -> jax.Array:
    """float32 ``x`` to bfloat16, rounded up with probability equal to the dropped fraction (timm's kernel:
    random bits added below bfloat16's mantissa, then truncated)."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    noise = jax.random.bits(key, x.shape, jnp.uint32) >> 16
    bits = (bits + noise) & jnp.uint32(0xFFFF0000)  # exactly representable in bfloat16: the cast is exact
    return jax.lax.bitcast_convert_type(bits, jnp.float32).astype(jnp.bfloat16)


def _lerp(e: jax.Array, p: jax.Array, w: jax.Array) -> jax.Array:
    """torch's ``lerp(e, p, w)`` in (at least) float32: ``e + w*(p - e)`` for ``w < 0.5``, else
    ``p - (p - e)*(1 - w)`` (exact at ``w = 1``: the first update copies)."""
    op = compute_dtype(e.dtype)
    e32, p32, w = e.astype(op), p.astype(op), w.astype(jnp.finfo(op).dtype)
    diff = p32 - e32
    return jnp.where(w < 0.5, e32 + w * diff, p32 - diff * (1 - w)).astype(e.dtype)


def _mul_add(e: jax.Array, p: jax.Array, w: jax.Array) -> jax.Array:
    """timm's mixed-dtype update (average and params of different dtypes): ``e*(1 - w)``, then ``+ w*p``."""
    op = compute_dtype(e.dtype)
    w = w.astype(jnp.finfo(op).dtype)
    scaled = (e.astype(op) * (1 - w)).astype(e.dtype)  # torch's in-place mul_ rounds to the average's dtype
    return (scaled.astype(op) + w * p.astype(op)).astype(e.dtype)


def _v2_step(e: jax.Array, p: jax.Array, d: jax.Array, w: jax.Array) -> jax.Array:
    """timm V2's ``decay * e + (1 - decay) * p``: two products and a sum, each rounded to the average's dtype."""
    op = compute_dtype(e.dtype)
    real = jnp.finfo(op).dtype
    a = (d.astype(real) * e.astype(op)).astype(e.dtype)
    b = (w.astype(real) * p.astype(op)).astype(e.dtype)
    return (a.astype(op) + b.astype(op)).astype(e.dtype)


def _apply(params: Any, state: ModelEmaState, d: jax.Array, w: jax.Array, form: str) -> ModelEmaState:
    """One update of every leaf with decay ``d`` and weight ``w = 1 - d``; ``form``: ``'lerp'`` (V3) or ``'v2'``."""
    p_leaves, treedef = jax.tree.flatten(params)
    e_leaves = treedef.flatten_up_to(state.params)
    key = state.key
    if key is not None:
        key, sub = jax.random.split(key)
    out = []
    for i, (e, p) in enumerate(zip(e_leaves, p_leaves)):
        p = jnp.asarray(p)
        if not _is_averaged(e):
            out.append(p.astype(e.dtype))  # integer / bool leaves: copied, as timm copies integer buffers
        elif form == 'v2':
            out.append(_v2_step(e, p, d, w))
        elif key is not None and e.dtype == jnp.bfloat16:
            x = e.astype(jnp.float32) * (1 - w) + w * p.astype(jnp.float32)
            out.append(_stochastic_round_bf16(x, jax.random.fold_in(sub, i)))
        elif e.dtype == p.dtype:
            out.append(_lerp(e, p, w))
        else:
            out.append(_mul_add(e, p, w))
    return ModelEmaState(treedef.unflatten(out), state.count + 1, key)


def _warmup_schedule(
    decay: float, min_decay: float, update_after_step: int, use_warmup: bool, warmup_gamma: float, warmup_power: float
) -> Callable[[Any], Tuple[jax.Array, jax.Array]]:
    """``step -> (decay, weight = 1 - decay)`` as float32 scalars: timm's ``ModelEmaV3.get_decay``."""
    fixed = (jnp.float32(decay), jnp.float32(1.0 - decay))  # rounded from float64, as torch rounds its scalar

    def decay_and_weight(step: Any) -> Tuple[jax.Array, jax.Array]:
        if step is None:
            return fixed
        s = jnp.maximum(jnp.asarray(step) - (update_after_step + 1), 0)
        if use_warmup:
            t = (1 + s.astype(jnp.float32) / warmup_gamma) ** (-warmup_power)
            d = jnp.clip(1 - t, min_decay, decay).astype(jnp.float32)
            w = jnp.clip(t, 1.0 - decay, 1.0 - min_decay).astype(jnp.float32)
        else:
            d, w = fixed
        started = s > 0
        return jnp.where(started, d, jnp.float32(0)), jnp.where(started, w, jnp.float32(1))

    return decay_and_weight


def _check_decay(decay: Any) -> None:
    check_range('decay', decay, 0.0, 1.0)


def model_ema_v3(
    decay: float = 0.9998,
    min_decay: float = 0.0,
    update_after_step: int = 0,
    use_warmup: bool = False,
    warmup_gamma: float = 1.0,
    warmup_power: float = 2 / 3,
    *,
    ema_dtype: Any = None,
    stochastic_rounding: bool = True,
    key: Any = None,
) -> ModelEma:
    """timm's ``ModelEmaV3``: an EMA of the params whose decay may warm up with the step.

    Args:
        decay: the decay, in [0, 1] (the warmup's ceiling). Default 0.9998, timm train.py's ``--model-ema-decay``
            (``ModelEmaV3``'s own default is 0.9999).
        min_decay: the warmup's floor, in [0, decay].
        update_after_step: updates with ``step <= update_after_step + 1`` copy the params (decay 0); >= 0.
        use_warmup: decay ``1 - (1 + s / warmup_gamma) ** -warmup_power`` instead of ``decay``.
        warmup_gamma, warmup_power: the warmup's shape, each > 0 (timm: 1 and 2/3 for a million-step run,
            3/4 for shorter ones; ``power=1`` is a plain average).
        ema_dtype: keep the average in this floating dtype (timm's ``dtype``); ``None``: each leaf's own.
        stochastic_rounding: round bfloat16 averages stochastically (module docstring); else to nearest.
        key: the stochastic rounding's seed: ``None`` (seed 0), an int, or a ``jax.random.key`` / ``PRNGKey``.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> ema = jt.model_ema_v3(decay=0.5)
        >>> state = ema.init({'w': jnp.zeros(2)})
        >>> state = ema.update({'w': jnp.ones(2)}, state, step=1)   # step 1: decay 0, a copy
        >>> state = ema.update({'w': jnp.zeros(2)}, state, step=2)
        >>> state.params['w'].tolist(), float(ema.get_decay(2))
        ([0.5, 0.5], 0.5)
    """
    _check_decay(decay)
    check_range('min_decay', min_decay, 0.0, 1.0)
    if float(min_decay) > float(decay):
        raise ValueError(
            f'Invalid min_decay: {min_decay!r}, expected a value in [0, decay={float(decay):g}] '
            '(the warmup decay is clamped to [min_decay, decay])'
        )
    check_range('update_after_step', update_after_step, 0, integer=True)
    check_bool('use_warmup', use_warmup)
    check_range('warmup_gamma', warmup_gamma, 0.0, lo_open=True)
    check_range('warmup_power', warmup_power, 0.0, lo_open=True)
    check_bool('stochastic_rounding', stochastic_rounding)
    ema_dtype = resolve_dtype('ema_dtype', ema_dtype)
    _check_key(key)
    schedule = _warmup_schedule(
        float(decay),
        float(min_decay),
        int(update_after_step),
        bool(use_warmup),
        float(warmup_gamma),
        float(warmup_power),
    )

    def update(params: Any, state: ModelEmaState, step: Any = None) -> ModelEmaState:
        return _apply(params, state, *schedule(step), 'lerp')

    return ModelEma(_init_fn(ema_dtype, bool(stochastic_rounding), key), update, lambda step: schedule(step)[0])


def model_ema_v2(decay: float = 0.9998) -> ModelEma:
    """timm's ``ModelEmaV2``: ``ema <- decay * ema + (1 - decay) * params`` with a fixed ``decay`` in [0, 1].

    ``update(params, state, step=None)`` ignores ``step`` (V2 has none; the argument keeps V2 and V3
    interchangeable). The first update already averages with the initial params (V3 copies them instead).
    Default 0.9998 as timm train.py's ``--model-ema-decay`` (``ModelEmaV2``'s own default is 0.9999).
    """
    _check_decay(decay)
    d, w = jnp.float32(decay), jnp.float32(1.0 - float(decay))  # each rounded from float64, as torch's scalars

    def update(params: Any, state: ModelEmaState, step: Any = None) -> ModelEmaState:
        del step
        return _apply(params, state, d, w, 'v2')

    return ModelEma(_init_fn(None, False, None), update, lambda step: d)
