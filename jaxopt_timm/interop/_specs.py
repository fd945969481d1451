"""Where each reference optimizer keeps its state, and how it maps onto this package's state fields.

Keyed by the class a record ports (``OptimInfo.timm_class``): the layout of a
torch ``state_dict()`` is a fact about the reference class, shared by every
name bound to it. This package names its state fields after the reference's
keys (``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``, ...), so most entries
only say where the step count lives; the rest list the keys that differ.
``tests/test_interop.py`` checks every entry against the reference's own
``state_dict()`` after a few steps (keys, step placement and Python types).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

__all__ = ['TimmState', 'TIMM_STATE', 'timm_state_of', 'STEP_PLACES']

LOOKAHEAD_K = 6  # the sync period of timm's Lookahead and of the factory's lookahead_ names
STEP_PLACES = ('param_tensor', 'param_int', 'group_tensor', 'group_int', None)


@dataclasses.dataclass(frozen=True)
class TimmState:
    """A reference class's ``state_dict()`` layout.

    Attributes:
        step: where the update count lives: per param as a float32 tensor (``'param_tensor'``, torch's
            optimizers) or an int (``'param_int'``), in each param group (``'group_tensor'``, ``'group_int'``),
            or nowhere (``None``: SGD, Lion, ...).
        rename: reference key -> our state field, where the names differ.
        scale: reference key -> factor, ours = factor * reference (Adan keeps the negated previous gradient).
        shared: per-param reference key -> our global (param-independent) field holding the same value.
        python: reference keys stored as Python numbers rather than tensors, with their type.
        derived: reference keys that follow from the rest (the reference recomputes them before use, or
            they repeat the step, the routing or an argument): ``fn(param, step, paths, arg) -> value`` fills
            them going to the reference (``param`` a torch-layout numpy array, ``paths`` the key paths of our state
            leaves for that param, ``arg(name)`` the optimizer argument's value); coming from it they are read
            nowhere.
        group: param-group key -> our global field, for values the reference keeps per group but equal in
            every group (Prodigy's ``d``, Schedule-Free's ``weight_sum``).
        group_required: param-group key -> the value a state_dict must have to cross (Schedule-Free saved in
            train mode, where the model's weights are the point the gradient is taken at).
        indexed: reference key -> our global field holding per leaf (in tree order) a tuple of per-axis factors
            (Kron's ``Q``; see :mod:`._factors`).
        flat: reference keys stored flattened (in torch dim order) for a param-shaped field here.
        constants: our global fields fixed by the arguments (initial value always right).
        optional: reference keys created only at some step: ``fn(step) -> present``; absent, ours keeps its
            initial value (Lookahead's slow weights, made at the first sync).
        group_counts: param-group keys that count updates too (Lookahead's ``lookahead_step``).
        squeezed: reference keys holding a statistic reduced over one axis of the param, stored without that
            axis (ours keep it with size 1).
        ours_only: our per-param fields the reference keeps outside its state_dict and recomputes before use
            (Adahessian's Hessian estimate, a tensor attribute in torch): kept at their initial value coming from
            the reference, left out going to it.
        unsupported: why this class's state cannot cross (empty: it can).
        refuse: ``fn(factory_kwargs) -> reason`` (empty: fine), for arguments under which it cannot.
    """

    step: Optional[str] = 'param_tensor'
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scale: Mapping[str, float] = dataclasses.field(default_factory=dict)
    shared: Mapping[str, str] = dataclasses.field(default_factory=dict)
    python: Mapping[str, type] = dataclasses.field(default_factory=dict)
    derived: Mapping[str, Callable[..., object]] = dataclasses.field(default_factory=dict)
    group: Mapping[str, str] = dataclasses.field(default_factory=dict)
    group_required: Mapping[str, object] = dataclasses.field(default_factory=dict)
    indexed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    flat: tuple = ()
    constants: tuple = ()
    optional: Mapping[str, Callable[[int], bool]] = dataclasses.field(default_factory=dict)
    group_counts: tuple = ()
    squeezed: tuple = ()
    ours_only: tuple = ()
    unsupported: str = ''
    refuse: Optional[Callable[[Mapping[str, object]], str]] = None

    def __post_init__(self):
        if self.step not in STEP_PLACES:
            raise ValueError(f'Invalid step: {self.step!r}, expected one of {STEP_PLACES}')

    def field(self, key: str) -> str:
        """Our field for the reference's per-param ``key``."""
        return self.rename.get(key, key)

    def key(self, field: str) -> str:
        """The reference's per-param key for our ``field``."""
        for k, f in self.rename.items():
            if f == field:
                return k
        return field


def _rms(p: np.ndarray, step: int, paths: tuple, arg: Callable[[str], object]) -> float:
    del step, paths, arg
    return float(np.linalg.norm(p.astype(np.float32)) / np.sqrt(max(p.size, 1)))


def _step(p: np.ndarray, step: int, paths: tuple, arg: Callable[[str], object]) -> int:
    del p, paths, arg
    return int(step)


def _frequency(p: np.ndarray, step: int, paths: tuple, arg: Callable[[str], object]) -> object:
    del p, step, paths
    return arg('precondition_frequency')


def _shampoo_beta(p: np.ndarray, step: int, paths: tuple, arg: Callable[[str], Any]) -> object:
    del p, step, paths
    beta = arg('shampoo_beta')  # None: the second beta, as the reference
    if beta is None:
        betas = arg('betas')
        beta = betas[1] if betas is not None else arg('b2')
    return beta


def _routed_to_muon(p: np.ndarray, step: int, paths: tuple, arg: Callable[[str], object]) -> bool:
    del p, step, arg
    return not any("'fallback'" in path for path in paths)  # Muon's state: inner_states['muon'|'fallback']


def _hessian_kept(kwargs: Mapping[str, object]) -> str:
    if kwargs.get('update_each', 1) != 1:
        return (
            'with update_each > 1 the Hessian estimate is reused between updates, and timm keeps it on the '
            'tensor (p.hess), outside its state_dict'
        )
    return ''


def _prodigy_sliced(kwargs: Mapping[str, object]) -> str:
    if kwargs.get('slice_p', 1) != 1:
        return 'with slice_p > 1 the reference keeps every slice_p-th element of s and p0 only'
    return ''


_TENSOR = TimmState()
_INT = TimmState(step='param_int')
_NONE = TimmState(step=None)

TIMM_STATE: Dict[str, TimmState] = {
    'torch.optim.Adam': _TENSOR,
    'torch.optim.AdamW': _TENSOR,
    'torch.optim.Adamax': _TENSOR,
    'torch.optim.Adagrad': _TENSOR,
    'torch.optim.RAdam': _TENSOR,
    'torch.optim.SGD': _NONE,
    'torch.optim.Adadelta': TimmState(rename={'square_avg': 'e_g', 'acc_delta': 'e_x'}),
    'torch.optim.RMSprop': TimmState(rename={'square_avg': 'nu', 'momentum_buffer': 'trace'}),
    'torch.optim.NAdam': TimmState(shared={'mu_product': 'mu_product'}),
    'timm.optim.AdamWLegacy': _TENSOR,
    'timm.optim.Adopt': _TENSOR,
    'timm.optim.NAdamW': _TENSOR,
    'timm.optim.AdafactorBigVision': _TENSOR,
    'timm.optim.RMSpropTF': TimmState(rename={'square_avg': 'nu', 'momentum_buffer': 'trace'}),
    'timm.optim.LaProp': TimmState(shared={'exp_avg_lr_2': 'exp_avg_lr_2'}, python={'exp_avg_lr_1': float}),
    'timm.optim.AdaBelief': _INT,
    'timm.optim.AdamP': _INT,
    'timm.optim.Mars': _INT,
    'timm.optim.MADGRAD': _INT,
    'timm.optim.NvNovoGrad': _INT,
    'timm.optim.RAdamLegacy': _INT,
    'timm.optim.Adafactor': TimmState(
        step='param_int', derived={'RMS': _rms}, squeezed=('exp_avg_sq_row', 'exp_avg_sq_col')
    ),
    'timm.optim.NAdamLegacy': TimmState(
        step='param_int', shared={'m_schedule': 'mu_product'}, python={'m_schedule': float}
    ),
    'timm.optim.Adahessian': TimmState(
        step='param_int',
        python={'hessian step': int},
        derived={'hessian step': _step},
        ours_only=('hessian',),
        refuse=_hessian_kept,
    ),
    'timm.optim.Adan': TimmState(step='group_int', rename={'neg_pre_grad': 'pre_grad'}, scale={'neg_pre_grad': -1.0}),
    'timm.optim.Lamb': TimmState(step='group_tensor'),
    'timm.optim.Lion': TimmState(step=None, rename={'exp_avg': 'mu'}),
    'timm.optim.SGDW': _NONE,
    'timm.optim.Lars': _NONE,
    'timm.optim.SGDP': TimmState(step=None, rename={'momentum': 'momentum_buffer'}),
    'timm.optim.Muon': TimmState(python={'use_muon': bool}, derived={'use_muon': _routed_to_muon}),
    'timm.optim.Kron': TimmState(
        step='param_int',
        rename={'momentum_buffer': 'mu'},
        indexed={'Q': 'factors'},
        shared={'update_counter': 'update_counter'},
        python={'update_counter': int},
    ),
    'pytorch_optimizer.AdEMAMix': TimmState(step='group_int'),
    'pytorch_optimizer.SAM': _NONE,
    'pytorch_optimizer.SOAP': TimmState(
        step='group_int',
        indexed={'GG': 'GG', 'Q': 'Q'},
        python={'precondition_frequency': int, 'shampoo_beta': float},
        derived={'precondition_frequency': _frequency, 'shampoo_beta': _shampoo_beta},
    ),
    'pytorch_optimizer.ScalableShampoo': TimmState(
        step='group_int',
        unsupported=(
            "Shampoo: the reference keeps its statistics and preconditioners in Python objects (PreConditioner, "
            'SGDGraft) holding its block partitioning, not in tensors a state_dict can be written from'
        ),
    ),
    'prodigyopt.Prodigy': TimmState(
        step='param_int',
        group={'d': 'd', 'd_max': 'd_max', 'd_numerator': 'd_numerator'},
        group_counts=('k',),
        flat=('s', 'p0'),
        refuse=_prodigy_sliced,
    ),
    'schedulefree.AdamWScheduleFree': TimmState(
        step=None,
        group={'weight_sum': 'weight_sum', 'lr_max': 'lr_max'},
        group_counts=('k',),
        group_required={'train_mode': True},
        constants=('momentum',),
    ),
}
for _name in ('SGDScheduleFree', 'RAdamScheduleFree'):
    TIMM_STATE[f'schedulefree.{_name}'] = TIMM_STATE['schedulefree.AdamWScheduleFree']


def timm_state_of(timm_class: str, lookahead: bool = False) -> TimmState:
    """The entry for ``timm_class`` (wrapped in timm's ``Lookahead``: its base's state, plus the slow weights
    and the group's sync counter); a class without one raises, naming it."""
    try:
        spec = TIMM_STATE[timm_class]
    except KeyError:
        raise ValueError(f'{timm_class}: no state_dict layout is known for this reference class') from None
    if not lookahead:
        return spec
    return dataclasses.replace(
        spec,
        rename={**spec.rename, 'lookahead_slow_buff': 'slow'},
        group_counts=('lookahead_step',),
        # timm (and this package's factory) sync every LOOKAHEAD_K updates, making the buffer at the first sync
        optional={**spec.optional, 'lookahead_slow_buff': lambda step: step >= LOOKAHEAD_K},
    )
