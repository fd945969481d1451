"""jaxopt_timm: timm's optimizers and lr schedulers as pure JAX/optax functions, with parity to timm."""
from . import transforms
from . import optim
from . import scheduler
from .optim import create_optimizer, create_optimizer_v2, get_optimizer_info, list_optimizers, optimizer_kwargs
from .scheduler import create_scheduler, create_scheduler_v2
from ._xla import compiler_options

__version__ = '0.1.0'

__all__ = [
    'transforms', 'optim', 'create_optimizer', 'create_optimizer_v2', 'get_optimizer_info', 'list_optimizers',
    'optimizer_kwargs', 'scheduler', 'create_scheduler', 'create_scheduler_v2', 'compiler_options',
]
