"""``train --model-ema``: timm train.py's EMA of the weights, updated after every step and evaluated each epoch.

As in timm's train.py the average is a ``ModelEmaV3`` (:func:`jaxopt_timm.model_ema_v3`) with
``--model-ema-decay`` (default 0.9998) and, with ``--model-ema-warmup``, its decay warmup; it is updated after
every optimizer update with ``step=num_updates`` (1 for the first update, so the first update copies the
weights) and evaluated on the test split after every epoch, beside the model (``ema_test_loss`` /
``ema_test_acc`` in the log, ``summary.csv`` and ``results.json``). Its state is part of every checkpoint, so a
resumed run continues the same average. timm's train.py also steps a plateau schedule on (and picks its best
checkpoint by) the EMA's metric; here the plateau schedule always follows the model's own test accuracy.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any, Dict, Optional

import jax

import jaxopt_timm as jt

__all__ = ['make_ema', 'ema_metrics']


def make_ema(args: argparse.Namespace) -> Optional[jt.utils.ModelEma]:
    """timm's ``ModelEmaV3`` for ``--model-ema`` (``None`` without it), its ``update`` jitted."""
    if not args.model_ema:
        return None
    return _ema(float(args.model_ema_decay), bool(args.model_ema_warmup))


@functools.lru_cache(maxsize=8)
def _ema(decay: float, warmup: bool) -> jt.utils.ModelEma:
    # one compilation per (decay, warmup) in a process (the tests run many); the step is traced, not a constant
    ema = jt.model_ema_v3(decay=decay, use_warmup=warmup)
    return ema._replace(update=jax.jit(ema.update))


def ema_metrics(eval_step, ema_state: Any, x: Any, y: Any) -> Dict[str, float]:
    """The EMA weights' test loss and accuracy, as summary columns."""
    loss, acc = (float(v) for v in eval_step(ema_state.params, x, y))
    return dict(ema_test_loss=loss, ema_test_acc=acc)
