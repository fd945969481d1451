"""jaxopt_timm: timm's optimizers and lr schedulers as pure JAX/optax functions, with parity to timm."""

from . import transforms
from . import optim
from . import scheduler
from . import utils
from . import interop
from .optim import create_optimizer, create_optimizer_v2, get_optimizer_info, list_optimizers, optimizer_kwargs
from .scheduler import create_scheduler, create_scheduler_v2
from ._xla import compiler_options
from .utils import ModelEmaState, dispatch_clip_grad, model_ema_v2, model_ema_v3

__version__ = '0.1.0'

__all__ = [
    'transforms',
    'optim',
    'interop',
    'create_optimizer',
    'create_optimizer_v2',
    'get_optimizer_info',
    'list_optimizers',
    'optimizer_kwargs',
    'scheduler',
    'create_scheduler',
    'create_scheduler_v2',
    'compiler_options',
    'utils',
    'model_ema_v2',
    'model_ema_v3',
    'ModelEmaState',
    'dispatch_clip_grad',
]
