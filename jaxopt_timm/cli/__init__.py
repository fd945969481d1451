"""The ``jaxopt-timm`` command line (also ``python -m jaxopt_timm``), built only on the public API.

Subcommands: ``train`` (a timm train.py-style run on scikit-learn's digits),
``schedule`` (print and plot a schedule), ``list`` (the optimizers) and
``parity`` (side by side with an installed timm). torch and timm are imported
only by ``parity``, when it runs.
"""

from ._main import build_parser, main
from ._schedule import schedule_values
from ._train import TrainResult, default_lr, train

__all__ = ['main', 'build_parser', 'train', 'TrainResult', 'default_lr', 'schedule_values']
