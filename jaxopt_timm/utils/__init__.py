"""timm's training utilities (``timm.utils``) that a recipe needs besides the optimizer and the schedule.

* :func:`model_ema_v3` / :func:`model_ema_v2`: timm's ``ModelEmaV3`` / ``ModelEmaV2``, an exponential moving
  average of the params as pure ``init`` / ``update`` functions over a params tree (:mod:`._model_ema`);
* :func:`dispatch_clip_grad`: timm's ``--clip-grad`` / ``--clip-mode`` (norm, value, AGC) as an optax
  transformation (:mod:`._clip_grad`; the kernels live in :mod:`jaxopt_timm.transforms`).
"""

from ._clip_grad import CLIP_MODES, dispatch_clip_grad
from ._model_ema import ModelEma, ModelEmaState, model_ema_v2, model_ema_v3

__all__ = ['model_ema_v2', 'model_ema_v3', 'ModelEma', 'ModelEmaState', 'dispatch_clip_grad', 'CLIP_MODES']
