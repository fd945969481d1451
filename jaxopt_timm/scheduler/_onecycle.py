"""The 1cycle policy: mmengine's / torch's ``OneCycleLR``.

Reference: Smith & Topin, 2017, "Super-Convergence: Very Fast Training of
Neural Networks Using Large Learning Rates" (https://arxiv.org/abs/1708.07120).
"""

from __future__ import annotations

import math
from typing import List, Optional

import jax.numpy as jnp

from .._validate import check_bool, check_choice, check_range
from ._core import INT32_MAX, Schedule

__all__ = ['onecycle']


def _split(x: float):
    """``x`` as an int32-safe integer part and a float remainder."""
    i = min(max(math.floor(x), -INT32_MAX), INT32_MAX)
    return i, x - i


def onecycle(
    eta_max: float,
    total_steps: Optional[int] = None,
    epochs: Optional[int] = None,
    steps_per_epoch: Optional[int] = None,
    pct_start: float = 0.3,
    anneal_strategy: str = 'cos',
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    r"""mmengine's ``OneCycleLR`` as a pure function: ``schedule(i)`` is the lr used by update ``i``.

    With :math:`T` = ``total_steps`` (or ``epochs * steps_per_epoch``),
    :math:`\eta_0 = \eta_{max} / ` ``div_factor`` and
    :math:`\eta_{min} = \eta_0 / ` ``final_div_factor``, the phases end at
    steps :math:`p T - 1` (:math:`\eta_0 \to \eta_{max}`) and :math:`T - 1`
    (:math:`\eta_{max} \to \eta_{min}`); with ``three_phase`` at
    :math:`pT - 1` (up), :math:`2pT - 2` (back to :math:`\eta_0`) and
    :math:`T - 1` (down to :math:`\eta_{min}`). Within a phase from step
    :math:`a` to :math:`b`, with :math:`x = (i - a) / (b - a)`:

    .. math::
        \text{cos: } \eta_{end} + \tfrac12 (\eta_{start} - \eta_{end})(1 + \cos \pi x)
        \qquad \text{linear: } \eta_{start} + (\eta_{end} - \eta_{start})\, x

    Args:
        eta_max: peak lr (the schedule's ``base_lr``).
        total_steps: cycle length in updates; else ``epochs * steps_per_epoch``.
        epochs: number of epochs (with ``steps_per_epoch``).
        steps_per_epoch: updates per epoch (with ``epochs``).
        pct_start: fraction of the cycle spent increasing the lr, in [0, 1].
        anneal_strategy: 'cos' or 'linear'.
        div_factor: ``eta_max / initial lr``, > 0.
        final_div_factor: ``initial lr / final lr``, > 0.
        three_phase: add a symmetric return to the initial lr before the final anneal.

    Example:
        >>> import jaxopt_timm as jt
        >>> sched = jt.scheduler.onecycle(0.1, total_steps=100)
        >>> round(float(sched(0)), 6), round(float(sched(29)), 6)
        (0.004, 0.1)

    Note:
        mmengine raises past ``total_steps``; here the last update's lr
        (``schedule(total_steps - 1)``) is held.
    """
    if total_steps is None:
        if epochs is None or steps_per_epoch is None:
            raise ValueError(
                'Invalid total_steps: None, expected a positive integer, or both epochs and steps_per_epoch'
            )
        check_range('epochs', epochs, 0, lo_open=True, integer=True)
        check_range('steps_per_epoch', steps_per_epoch, 0, lo_open=True, integer=True)
        total_steps = int(epochs) * int(steps_per_epoch)
    check_range('total_steps', total_steps, 0, INT32_MAX, lo_open=True, integer=True)
    check_range('eta_max', eta_max, 0.0)
    check_range('pct_start', pct_start, 0.0, 1.0)
    check_choice('anneal_strategy', anneal_strategy, ('cos', 'linear'))
    check_range('div_factor', div_factor, 0.0, lo_open=True)
    check_range('final_div_factor', final_div_factor, 0.0, lo_open=True)
    check_bool('three_phase', three_phase)
    T = int(total_steps)
    eta_max = float(eta_max)
    initial = eta_max / div_factor
    final = initial / final_div_factor
    if three_phase:
        phases = [
            (float(pct_start * T) - 1, initial, eta_max),
            (float(2 * pct_start * T) - 2, eta_max, initial),
            (T - 1, initial, final),
        ]
    else:
        phases = [(float(pct_start * T) - 1, initial, eta_max), (T - 1, eta_max, final)]
    # a phase that some update selects must have a length (mmengine would divide by zero)
    prev_ends: List[float] = []
    for j, (end, _, _) in enumerate(phases):
        start = phases[j - 1][0] if j else 0
        lo = max([math.floor(e) + 1 for e in prev_ends] + [0])
        hi = T - 1 if j == len(phases) - 1 else min(math.floor(end), T - 1)
        if lo <= hi and end == start:
            raise ValueError(
                f'Invalid pct_start: {pct_start!r}, with total_steps={T} phase {j} has zero length; expected a '
                f'value in [0, 1] giving phases at least one step long'
            )
        prev_ends.append(end)
    cos = anneal_strategy == 'cos'

    def phase_value(t, start, end, lr_from, lr_to):
        s_int, s_frac = _split(start)
        e_int, e_frac = _split(end)
        length = jnp.float32(end - start)
        done = ((t - s_int).astype(jnp.float32) - jnp.float32(s_frac)) / length  # x
        left = ((e_int - t).astype(jnp.float32) + jnp.float32(e_frac)) / length  # 1 - x
        # add a non-negative term to the smaller end so nothing cancels
        lo_lr, hi_lr, frac = (lr_from, lr_to, done) if lr_from <= lr_to else (lr_to, lr_from, left)
        if cos:
            s = jnp.sin(jnp.float32(math.pi / 2) * frac)
            frac = s * s
        return jnp.float32(lo_lr) + jnp.float32(hi_lr - lo_lr) * frac

    def lr_at(t):
        t = jnp.minimum(t, T - 1)
        value = None
        for j in reversed(range(len(phases))):
            end, lr_from, lr_to = phases[j]
            start = phases[j - 1][0] if j else 0
            v = phase_value(t, start, end, lr_from, lr_to)
            # t <= end_step (a float) <=> t <= floor(end_step) for integer t
            value = v if value is None else jnp.where(t <= max(math.floor(end), -1), v, value)
        return value

    return Schedule(lr_at, eta_max, 'onecycle', lambda cycles=0: T)
