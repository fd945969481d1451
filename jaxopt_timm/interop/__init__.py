"""Crossing between timm and JAX mid-training: optimizer state to and from a timm optimizer's ``state_dict()``.

``from_timm`` turns the state_dict of timm's optimizer into the state of
:func:`jaxopt_timm.create_optimizer_v2` for the same name and arguments;
``to_timm`` does the reverse, giving a dict that timm's optimizer loads with
``load_state_dict``. The params are matched by the torch model's
``named_parameters()`` names; ``layout='flax'`` transposes between torch and
Flax kernel layouts. torch and timm are imported only when a conversion
needs them (tensors in, tensors out). ``plateau_from_timm`` / ``plateau_to_timm`` carry the
plateau schedule's state; every other schedule's position is the optimizer's update count.
"""

from ._optimizer import from_timm, timm_param_order, to_timm
from ._scheduler import plateau_from_timm, plateau_to_timm
from ._specs import TIMM_STATE, TimmState

__all__ = [
    'from_timm',
    'to_timm',
    'timm_param_order',
    'plateau_from_timm',
    'plateau_to_timm',
    'TIMM_STATE',
    'TimmState',
]
