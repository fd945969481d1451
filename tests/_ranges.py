"""The accepted range of every numeric argument of every ``jaxopt_timm.optim`` alias, one table keyed by alias.

Each range is the reference constructor's own check where it has one (torch.optim / timm ``__init__``: lr, eps,
betas, weight_decay, ``alpha >= 0``, ``0 <= rho <= 1``, ...), narrowed where the reference accepts a value on
which its own update breaks (noted beside the entry), and the mathematical domain where it has none (a clip
threshold must be positive, a count at least 1). ``test_argument_ranges.py`` sweeps the values just inside and
just outside each range, and measures timm's constructor on the same values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

__all__ = ['Range', 'BETAS', 'RANGES', 'BASE_KWARGS', 'numeric_arguments']


@dataclass(frozen=True)
class Range:
    """An interval of accepted values; ``None`` ends are unbounded (infinities are never accepted)."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    big: float = 10.0  # the value tried "just inside" an unbounded end (its negative at an unbounded lower end)

    def _step(self, bound: float) -> float:
        return 1 if self.integer else 1e-3 * max(1.0, abs(bound))

    def inside(self) -> List[float]:
        """A value at (closed) or just inside (open) each end, and a large value at an unbounded end."""
        lo = -self.big if self.lo is None else (self.lo + self._step(self.lo) if self.lo_open else self.lo)
        hi = self.big if self.hi is None else (self.hi - self._step(self.hi) if self.hi_open else self.hi)
        if self.lo is not None and self.hi is None:
            hi = max(hi, lo + self.big)
        return [self._cast(lo), self._cast(hi)]

    def outside(self) -> List[float]:
        """A value at (open) or just past (closed) each bounded end."""
        out = []
        if self.lo is not None:
            out.append(self._cast(self.lo if self.lo_open else self.lo - self._step(self.lo)))
        if self.hi is not None:
            out.append(self._cast(self.hi if self.hi_open else self.hi + self._step(self.hi)))
        return out

    def _cast(self, v: float) -> Union[int, float]:
        return int(v) if self.integer else float(v)


# per element of a betas tuple: torch / timm's ``0 <= beta < 1``
BETA = Range(0.0, 1.0, hi_open=True)
BETAS = (BETA, BETA)

NONNEG = Range(0.0)  # lr, eps, weight_decay, ...: torch's ``0 <= x``
POSITIVE = Range(0.0, lo_open=True)
UNIT = Range(0.0, 1.0)  # [0, 1]
MOMENTUM = Range(0.0, 1.0, hi_open=True)  # an EMA coefficient: 1 would freeze it
INTERIOR = Range(0.0, 1.0, lo_open=True, hi_open=True)  # (0, 1)
# heavy-ball momentum (torch SGD / RMSprop, timm Lars / RMSpropTF): torch checks only ``0 <= momentum``, but the
# buffer grows like momentum**t above 1 (torch's own run overflows); 1 itself (no decay) stays finite
HEAVY_BALL = Range(0.0, 1.0)
COUNT = Range(1, integer=True, big=3)  # a small count: each one is a loop over the step
NONNEG_INT = Range(0, integer=True, big=3)
ANY_INT = Range(integer=True)
ANY = Range()
LR = {'learning_rate': NONNEG}
ADAM_LIKE = {'learning_rate': NONNEG, 'betas': BETAS, 'eps': NONNEG, 'weight_decay': NONNEG}
MAX_LR = {'max_lr': POSITIVE}  # ours only: the peak lr of corrected weight decay (lr**2 / max_lr)

RangeSpec = Union[Range, Tuple[Range, ...]]

RANGES: Dict[str, Dict[str, RangeSpec]] = {
    'adabelief': dict(ADAM_LIKE),
    'adadelta': {**LR, 'rho': UNIT, 'eps': NONNEG, 'weight_decay': NONNEG},  # torch: 0 <= rho <= 1
    'adafactor': {
        **LR, 'eps': NONNEG, 'eps_scale': NONNEG, 'clip_threshold': POSITIVE, 'betas': BETAS,
        'decay_rate': Range(None, 0.0),  # beta2_t = 1 - t**decay_rate: a positive rate makes it negative
        'weight_decay': NONNEG, 'min_dim_size_to_factor': NONNEG_INT},
    'adafactor_bv': {
        **LR, **MAX_LR, 'min_dim_size_to_factor': NONNEG_INT, 'decay_rate': NONNEG, 'decay_offset': NONNEG_INT,
        'beta2_cap': UNIT, 'momentum': MOMENTUM, 'eps': NONNEG, 'weight_decay': NONNEG,
        'clipping_threshold': POSITIVE},
    'adagrad': {**LR, 'lr_decay': NONNEG, 'weight_decay': NONNEG, 'initial_accumulator_value': NONNEG, 'eps': NONNEG},
    'adahessian': {**ADAM_LIKE, 'hessian_power': UNIT, 'update_each': COUNT, 'n_samples': COUNT,
                   'seed': NONNEG_INT},
    'adam': dict(ADAM_LIKE),
    'adamax': dict(ADAM_LIKE),
    'adamw': dict(ADAM_LIKE),
    'adamw_legacy': {**ADAM_LIKE, **MAX_LR, 'clipping_threshold': POSITIVE},
    'adamp': {**ADAM_LIKE, 'delta': NONNEG, 'wd_ratio': NONNEG},
    'adan': {**ADAM_LIKE, 'betas': (BETA, BETA, BETA)},
    'adopt': {**ADAM_LIKE, **MAX_LR, 'clip_exp': ANY},
    'kron': {
        **LR, **MAX_LR, 'momentum': MOMENTUM, 'weight_decay': NONNEG, 'preconditioner_update_probability': UNIT,
        'max_size_triangular': ANY_INT, 'min_ndim_triangular': ANY_INT, 'precond_lr': NONNEG,
        'precond_init_scale': POSITIVE, 'flatten_start_dim': NONNEG_INT, 'flatten_end_dim': ANY_INT,
        'seed': NONNEG_INT},
    'lamb': {**ADAM_LIKE, **MAX_LR, 'max_grad_norm': POSITIVE},
    'laprop': {**ADAM_LIKE, **MAX_LR},
    'lars': {**LR, 'momentum': HEAVY_BALL, 'dampening': UNIT, 'weight_decay': NONNEG, 'trust_coeff': POSITIVE,
             'eps': NONNEG},
    'lion': {**LR, **MAX_LR, 'betas': BETAS, 'weight_decay': NONNEG},
    'madgrad': {'learning_rate': POSITIVE, 'momentum': MOMENTUM, 'weight_decay': NONNEG, 'eps': NONNEG},
    'mars': {**ADAM_LIKE, 'gamma': ANY, 'lr_1d_factor': NONNEG, 'betas_1d': BETAS},
    'muon': {
        **LR, 'weight_decay': NONNEG, 'momentum': MOMENTUM, 'ns_steps': NONNEG_INT, 'eps': NONNEG,
        'safety_factor': Range(1.0),  # below 1 Newton-Schulz can diverge (timm NaNs from ~0.5 down)
        'adamw_lr': NONNEG, 'fallback_lr_scale': NONNEG, 'betas': BETAS},
    'nadam': {**ADAM_LIKE, 'momentum_decay': NONNEG},
    'nadam_legacy': {**ADAM_LIKE, 'schedule_decay': NONNEG},
    'nadamw': {**ADAM_LIKE, **MAX_LR, 'clipping_threshold': POSITIVE},
    'novograd': {**ADAM_LIKE, **MAX_LR},
    'radam': dict(ADAM_LIKE),
    'radam_legacy': dict(ADAM_LIKE),
    # torch accepts alpha >= 0; at alpha = 1 the average stays at its zero start and the step is g / eps
    'rmsprop': {**LR, 'alpha': Range(0.0, 1.0, hi_open=True), 'eps': NONNEG, 'weight_decay': NONNEG,
                'momentum': HEAVY_BALL},
    # timm accepts alpha >= 0; the average starts at one, so alpha = 1 is momentum SGD, above 1 it goes negative
    'rmsprop_tf': {**LR, **MAX_LR, 'alpha': UNIT, 'eps': NONNEG, 'weight_decay': NONNEG, 'momentum': HEAVY_BALL},
    'sgd': {**LR, 'momentum': HEAVY_BALL, 'dampening': UNIT, 'weight_decay': NONNEG},
    # SGDP divides its weight decay by 1 - momentum
    'sgdp': {**LR, 'momentum': MOMENTUM, 'dampening': UNIT, 'weight_decay': NONNEG, 'eps': NONNEG,
             'delta': NONNEG, 'wd_ratio': NONNEG},
    'sgdw': {**LR, **MAX_LR, 'momentum': HEAVY_BALL, 'dampening': UNIT, 'weight_decay': NONNEG},
    # the names timm lacks; Schedule-Free evaluates at y + (1 - 1/beta1)(z - y): beta1 must be > 0
    'sfadamw': {**ADAM_LIKE, 'betas': (INTERIOR, BETA), 'warmup_steps': NONNEG_INT, 'r': NONNEG,
                'weight_lr_power': NONNEG},
    'sfsgd': {**LR, 'momentum': INTERIOR, 'weight_decay': NONNEG, 'warmup_steps': NONNEG_INT, 'r': NONNEG,
              'weight_lr_power': NONNEG},
    'sfradam': {**ADAM_LIKE, 'betas': (INTERIOR, BETA), 'r': NONNEG, 'weight_lr_power': NONNEG},
    'prodigy': {'learning_rate': POSITIVE, 'betas': BETAS, 'beta3': UNIT, 'eps': POSITIVE, 'weight_decay': NONNEG,
                'd0': POSITIVE, 'd_coef': POSITIVE, 'growth_rate': Range(1.0), 'slice_p': COUNT},
    'ademamix': {**LR, 'betas': (BETA, BETA, UNIT), 'weight_decay': NONNEG, 'alpha': NONNEG,
                 't_alpha_beta3': POSITIVE, 'eps': NONNEG},
    'sam_optimizer': {'rho': NONNEG, 'perturb_eps': NONNEG},
    'soap': {**ADAM_LIKE, 'shampoo_beta': UNIT, 'precondition_frequency': COUNT, 'max_precondition_dim': COUNT},
    'shampoo': {
        **LR, 'betas': BETAS, 'weight_decay': NONNEG, 'inverse_exponent_override': NONNEG_INT,
        'start_preconditioning_step': COUNT, 'preconditioning_compute_steps': COUNT, 'statistics_compute_steps': COUNT,
        'block_size': NONNEG_INT, 'skip_preconditioning_rank_lt': NONNEG_INT,
        'no_preconditioning_for_layers_with_dim_gt': NONNEG_INT, 'diagonal_eps': NONNEG, 'matrix_eps': NONNEG},
}

# arguments an alias needs beyond its defaults to be built at all (SGDP has no default lr)
BASE_KWARGS: Dict[str, Dict[str, Any]] = {'sgdp': {'learning_rate': 0.1}}


def numeric_arguments(alias: Any) -> List[str]:
    """The alias's arguments that take a number or a tuple of numbers, read from its signature.

    A default that is an int/float (not a bool) or a tuple of them, or a ``None`` default annotated with
    ``float`` / ``int`` (an optional number), marks one.
    """
    import inspect
    out = []
    for name, prm in inspect.signature(alias).parameters.items():
        d = prm.default
        if isinstance(d, bool) or isinstance(d, str):
            continue
        is_num = isinstance(d, (int, float)) or (isinstance(d, tuple) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in d))
        annotation = str(prm.annotation)
        optional_num = d is None and ('float' in annotation or 'int' in annotation) and 'Callable' not in annotation
        if is_num or optional_num:
            out.append(name)
    return out
