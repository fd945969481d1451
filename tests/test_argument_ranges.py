"""Every registered name's numeric arguments against their accepted ranges (the table in ``_ranges.py``).

Driven by the registry: each name's alias, each of its numeric arguments (found from the signature, so a new
argument without a range fails ``test_every_numeric_argument_has_a_range``).

* values at / just inside each end of a range give finite params over a few steps on a small problem
  (params and gradients ~ N(0, 1));
* values just outside are refused at construction with a ``ValueError`` naming the argument;
* timm's constructor is run on the same values (through ``timm.optim.create_optimizer_v2``): where it refuses,
  ours refuses; where ours refuses and it does not, the case is in ``STRICTER`` with the reason, and each entry
  is checked to still be accepted by timm.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Dict, Iterator, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import ensure_reference, load_timm
from jaxopt_timm.parity._loader import torch_module
from _fast_jit import fast_jit
from _ranges import BASE_KWARGS, RANGES, Range, numeric_arguments
from _steps import update_extras

NAMES = jt.list_optimizers()
STEPS = 4
# the brief's small problem; Muon also gets a (8, 4) leaf: the others are too small for its orthogonalized path
SHAPES = {'fc.weight': (4, 3), 'fc.bias': (3,), 'conv.weight': (2, 3, 3, 3)}
MUON_SHAPES = {**SHAPES, 'proj.weight': (8, 4)}
# Kron un-jitted re-traces its lax.cond every call (seconds a step on CPU) and compiles in seconds: its step
# sweep covers the arguments it takes as traced values, inputs of one jitted step per name; the others (integers
# and the two that shape its state or schedule) are checked at construction only (the tests below)
KRON_TRACED = ('learning_rate', 'momentum', 'weight_decay', 'precond_lr')

# (alias, argument, end) where ours refuses a value timm's constructor accepts (measured by
# test_reference_constructor_agrees, which fails on an entry timm no longer accepts): why ours refuses it
STRICTER: Dict[Tuple[str, str, str], str] = {
    **{(a, 'weight_decay', 'lo'): 'unchecked by timm\'s class; < 0 grows the weights' for a in (
        'adabelief', 'adafactor', 'adahessian', 'adamw_legacy', 'adamp', 'adan', 'laprop', 'lion', 'mars',
        'nadam_legacy', 'novograd', 'radam_legacy', 'sgdp')},
    **{(a, 'learning_rate', 'lo'): 'unchecked by timm\'s class; a negative lr ascends' for a in (
        'adafactor', 'adamp', 'radam_legacy', 'sgdp')},
    **{(a, 'eps', 'lo'): 'unchecked by timm\'s class; a negative eps can zero the denominator' for a in (
        'adafactor', 'adafactor_bv', 'adamp', 'lars', 'nadam_legacy', 'radam_legacy', 'sgdp')},
    **{(a, f'{arg}[{i}]', end): 'unchecked by timm\'s class; outside [0, 1) the moment estimates and their bias '
       'correction break (timm NaNs or divides by zero on most)'
       for a, arg in (('adafactor', 'betas'), ('adamp', 'betas'), ('lamb', 'betas'), ('muon', 'betas'),
                      ('nadam_legacy', 'betas'), ('radam_legacy', 'betas'), ('mars', 'betas_1d'))
       for i in (0, 1) for end in ('lo', 'hi')},
    **{(a, 'clipping_threshold', 'lo'): 'unchecked by timm\'s class; a threshold <= 0 clips every update away'
       for a in ('adafactor_bv', 'adamw_legacy', 'nadamw')},
    **{(a, 'momentum', 'hi'): 'torch / timm check only momentum >= 0; the buffer grows like momentum**t above 1 '
       '(torch overflows too)' for a in ('lars', 'rmsprop', 'rmsprop_tf', 'sgd', 'sgdw')},
    **{(a, 'dampening', end): 'unchecked by torch / timm; outside [0, 1] the buffer adds -g or amplifies g'
       for a in ('lars', 'sgd', 'sgdp', 'sgdw') for end in ('lo', 'hi')},
    **{(a, 'min_dim_size_to_factor', 'lo'): 'unchecked by timm\'s class; a negative size means the same as 0'
       for a in ('adafactor', 'adafactor_bv')},
    ('adafactor', 'clip_threshold', 'lo'): 'unchecked by timm\'s class; 0 divides the update rms by zero',
    ('adafactor', 'eps_scale', 'lo'): 'unchecked by timm\'s class; a negative floor on the param scale',
    ('adafactor', 'decay_rate', 'hi'): 'unchecked by timm\'s class; beta2_t = 1 - t**decay_rate < 0, timm NaNs',
    ('adafactor_bv', 'decay_rate', 'lo'): 'unchecked by timm\'s class; beta2_t > 1, timm NaNs',
    ('adafactor_bv', 'decay_offset', 'lo'): 'unchecked by timm\'s class; a step count before the first step',
    ('adafactor_bv', 'beta2_cap', 'lo'): 'unchecked by timm\'s class; timm NaNs',
    ('adafactor_bv', 'beta2_cap', 'hi'): 'unchecked by timm\'s class; a cap above 1 never binds',
    ('adafactor_bv', 'momentum', 'lo'): 'unchecked by timm\'s class',
    ('adafactor_bv', 'momentum', 'hi'): 'unchecked by timm\'s class; at 1 the EMA freezes, above it grows',
    ('adahessian', 'update_each', 'lo'): 'unchecked by timm\'s class; 0 divides by zero at the first step',
    ('adahessian', 'n_samples', 'lo'): 'unchecked by timm\'s class; no Hutchinson sample: no curvature estimate',
    ('adamp', 'delta', 'lo'): 'unchecked by timm\'s class; a negative cosine threshold projects every weight',
    ('adamp', 'wd_ratio', 'lo'): 'unchecked by timm\'s class; a negative ratio grows the weights',
    ('kron', 'preconditioner_update_probability', 'lo'): 'unchecked by timm\'s class; not a probability',
    ('kron', 'preconditioner_update_probability', 'hi'): 'unchecked by timm\'s class; not a probability',
    ('kron', 'precond_lr', 'lo'): 'unchecked by timm\'s class; a negative step fits the preconditioner away',
    ('kron', 'precond_init_scale', 'lo'): 'unchecked by timm\'s class; a zero preconditioner never moves',
    ('kron', 'flatten_start_dim', 'lo'): 'unchecked by timm\'s class; a negative dim counts from the end',
    ('lamb', 'max_grad_norm', 'lo'): 'unchecked by timm\'s class; a norm <= 0 divides by zero',
    ('lars', 'trust_coeff', 'lo'): 'unchecked by timm\'s class; trust_coeff <= 0 zeroes or flips the update',
    ('mars', 'lr_1d_factor', 'lo'): 'unchecked by timm\'s class; a negative factor ascends on 1-d params',
    ('muon', 'ns_steps', 'lo'): 'unchecked by timm\'s class; a negative count runs no iteration (as 0)',
    ('muon', 'safety_factor', 'lo'): 'unchecked by timm\'s class; below 1 the normalised spectral norm can exceed '
                                     '1 and Newton-Schulz diverges (timm NaNs from about 0.5 down)',
    ('muon', 'adamw_lr', 'lo'): 'unchecked by timm\'s class; a negative lr ascends',
    ('muon', 'fallback_lr_scale', 'lo'): 'unchecked by timm\'s class; a negative scale ascends',
    ('nadam_legacy', 'schedule_decay', 'lo'): 'unchecked by timm\'s class',
    ('sgdp', 'delta', 'lo'): 'unchecked by timm\'s class; a negative cosine threshold projects every weight',
    ('sgdp', 'wd_ratio', 'lo'): 'unchecked by timm\'s class; a negative ratio grows the weights',
    ('sgdp', 'momentum', 'lo'): 'unchecked by timm\'s class',
    ('sgdp', 'momentum', 'hi'): 'unchecked by timm\'s class; SGDP divides its weight decay by 1 - momentum',
    ('rmsprop', 'alpha', 'hi'): 'torch checks only alpha >= 0; at 1 the average stays at zero (step g / eps, torch '
                                'diverges on a quadratic), above 1 it goes negative (torch NaNs)',
    ('rmsprop_tf', 'alpha', 'hi'): 'timm checks only alpha >= 0; above 1 the average goes negative (timm NaNs)',
    # the names timm lacks: their reference libraries check few arguments
    **{(a, arg, 'lo'): 'unchecked by the reference\'s class; a negative value ascends, grows the weights, '
       'can zero a denominator or is meaningless'
       for a, args in (('sfadamw', ('learning_rate', 'eps', 'weight_decay', 'warmup_steps', 'r', 'weight_lr_power')),
                       ('sfradam', ('learning_rate', 'eps', 'weight_decay', 'r', 'weight_lr_power')),
                       ('sfsgd', ('warmup_steps', 'r', 'weight_lr_power')),
                       ('prodigy', ('weight_decay', 'beta3', 'slice_p')))
       for arg in args},
    **{(a, f'betas[{i}]', end): 'unchecked by schedulefree\'s class; beta1 must be in (0, 1) for the evaluation '
       'point y + (1 - 1/beta1)(z - y), beta2 in [0, 1) for the second moment'
       for a in ('sfadamw', 'sfradam') for i in (0, 1) for end in ('lo', 'hi')},
    ('prodigy', 'beta3', 'hi'): 'unchecked by prodigyopt; above 1 the d estimate\'s sums grow without bound',
    ('prodigy', 'd_coef', 'lo'): 'unchecked by prodigyopt; d_coef <= 0 makes d_hat <= 0 (no step)',
    ('prodigy', 'growth_rate', 'lo'): 'unchecked by prodigyopt; below 1 d shrinks every step',
    ('ademamix', 't_alpha_beta3', 'lo'): 'pytorch-optimizer checks >= 0, but its warmup divides by it: 0 is '
                                         'ZeroDivisionError at the first step',
    ('soap', 'shampoo_beta', 'hi'): 'unchecked by pytorch-optimizer; above 1 the statistics\' EMA grows without '
                                    'bound',
    **{('shampoo', arg, 'lo'): 'unchecked by pytorch-optimizer; a negative count or size is meaningless'
       for arg in ('inverse_exponent_override', 'block_size', 'skip_preconditioning_rank_lt',
                   'no_preconditioning_for_layers_with_dim_gt')},
}


def _shapes(alias_name: str) -> Dict[str, tuple]:
    return MUON_SHAPES if alias_name == 'muon' else SHAPES


def _arrays(shapes: Dict[str, tuple], seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _tree(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in flat.items():
        mod, leaf = key.split('.')
        out.setdefault(mod, {})[leaf] = jnp.asarray(value)
    return out


def _default_of(alias, arg: str) -> Any:
    return inspect.signature(alias).parameters[arg].default


def _values(spec, default: Any, which: str) -> Iterator[Tuple[str, str, Any]]:
    """``(label, end, value)`` for a range (or a tuple of ranges, one element changed at a time)."""
    if isinstance(spec, Range):
        bounded = [e for e, b in (('lo', spec.lo), ('hi', spec.hi)) if b is not None]
        ends = ('lo', 'hi') if which == 'inside' else bounded
        for end, value in zip(ends, getattr(spec, which)()):
            yield '', end, value
        return
    base = tuple(default) if default is not None else (0.9,) * len(spec)
    for i, r in enumerate(spec):
        for _, end, value in _values(r, None, which):
            yield f'[{i}]', end, base[:i] + (value,) + base[i + 1:]


def _name_kwargs(name: str) -> Dict[str, Any]:
    """What building ``name`` passes its alias: the bound defaults, and momentum 0.9 as both factories do."""
    info = jt.get_optimizer_info(name)
    kw = {**BASE_KWARGS.get(info.alias.__name__, {}), **info.defaults}
    if info.has_momentum:
        kw.setdefault('momentum', 0.9)
    return kw


def _kwargs(name: str, arg: str, value: Any) -> Dict[str, Any]:
    """The name's kwargs with ``arg=value``, kept consistent with the name's other switches."""
    kw = {**_name_kwargs(name), arg: value}
    if kw.get('nesterov') and (kw.get('momentum', 0.0) == 0 or kw.get('dampening', 0.0) != 0):
        kw['nesterov'] = False  # Nesterov needs momentum > 0 and no dampening: a rule of its own (test_validation)
    if kw.get('corrected_weight_decay') and kw.get('learning_rate', 1.0) == 0:
        kw['max_lr'] = 1e-3  # the peak lr defaults to the lr itself, which must then be > 0
    return kw


def _cases(name: str, which: str) -> List[Tuple[str, str, Any, Dict[str, Any]]]:
    """``(argument label, end, value, alias kwargs)`` for every ranged argument of ``name``'s alias."""
    alias = jt.get_optimizer_info(name).alias
    out = []
    for arg, spec in RANGES[alias.__name__].items():
        default = _name_kwargs(name).get(arg, _default_of(alias, arg))
        for label, end, value in _values(spec, default, which):
            out.append((arg + label, end, value, _kwargs(name, arg, value)))
    return out


def _build(alias, kwargs: Dict[str, Any]):
    """``alias(**kwargs)``; Muon's ``adamw_lr`` warns that it is deprecated, as timm's does."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'adamw_lr is deprecated', FutureWarning)
        return alias(**kwargs)


def _finite(tree: Any) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _run(name: str, kwargs: Dict[str, Any], grads: List[Any], params: Any) -> Any:
    info = jt.get_optimizer_info(name)
    tx = _build(info.alias, kwargs)
    extra = update_extras(name)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params, **extra)
        params = optax.apply_updates(params, updates)
    return params


def _run_kron_traced(name: str, cases, grads, params) -> List[Tuple[str, Any, bool]]:
    """Every case of one Kron name through one jitted step whose hyperparameters are inputs."""
    static = {k: v for k, v in _name_kwargs(name).items() if k not in KRON_TRACED}
    if static.get('corrected_weight_decay'):
        static['max_lr'] = 1e-3  # a traced lr cannot be its own peak; the cases include lr = 0

    @fast_jit
    def step(hp, params, state, g):
        updates, state = jt.optim.kron(**static, **hp).update(g, state, params)
        return optax.apply_updates(params, updates), state

    out = []
    for label, _, value, kw in cases:
        hp = {k: jnp.float32(kw.get(k, _default_of(jt.optim.kron, k))) for k in KRON_TRACED}
        p, state = params, jt.optim.kron(**static, **hp).init(params)
        for g in grads:
            p, state = step(hp, p, state, g)
        out.append((label, value, _finite(p)))
    return out


@pytest.mark.parametrize('name', NAMES)
def test_every_numeric_argument_has_a_range(name):
    alias = jt.get_optimizer_info(name).alias
    table = RANGES.get(alias.__name__)
    assert table is not None, f'{alias.__name__} has no entry in _ranges.RANGES'
    missing = [a for a in numeric_arguments(alias) if a not in table]
    assert not missing, f'{alias.__name__}: numeric arguments without a range: {missing}'
    unknown = [a for a in table if a not in inspect.signature(alias).parameters]
    assert not unknown, f'{alias.__name__}: ranges for arguments it does not take: {unknown}'


@pytest.mark.parametrize('name', NAMES)
def test_values_inside_the_range_give_finite_steps(name):
    alias_name = jt.get_optimizer_info(name).alias.__name__
    shapes = _shapes(alias_name)
    params = _tree(_arrays(shapes, 0))
    grads = [_tree(_arrays(shapes, 1 + t)) for t in range(STEPS)]
    cases = _cases(name, 'inside')
    results = []
    if alias_name == 'kron':
        results += _run_kron_traced(name, [c for c in cases if c[0] in KRON_TRACED], grads, params)
    else:
        for label, _, value, kw in cases:
            results.append((label, value, _finite(_run(name, kw, grads, params))))
    bad = [(label, value) for label, value, ok in results if not ok]
    assert not bad, f'{name}: accepted values that give a non-finite step: {bad}'


@pytest.mark.parametrize('name', NAMES)
def test_values_outside_the_range_are_refused(name):
    alias = jt.get_optimizer_info(name).alias
    wrong = []
    for label, _, value, kw in _cases(name, 'outside') + [
            (arg, 'nan', float('nan'), _kwargs(name, arg, float('nan')))
            for arg, spec in RANGES[alias.__name__].items() if isinstance(spec, Range)]:
        arg = label.split('[')[0]
        try:
            _build(alias, kw)
        except ValueError as e:
            if arg not in str(e) or 'expected' not in str(e):
                wrong.append((label, value, f'message does not name {arg!r} and its range: {e}'))
            continue
        wrong.append((label, value, 'accepted'))
    assert not wrong, f'{name}: {wrong}'


def _timm_refuses(timm_optim, name: str, kw: Dict[str, Any], shapes) -> bool:
    module = torch_module(_arrays(shapes, 0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # timm's Muon: adamw_lr is deprecated
            timm_optim.create_optimizer_v2(list(module.parameters()), name, **kw)
    except ValueError:
        return True
    except Exception as err:  # noqa: BLE001 - pytorch-optimizer's own refusals (NegativeLRError, ...)
        if type(err).__module__.startswith('pytorch_optimizer'):
            return True
        raise
    return False


def _ours_refuses(name: str, kw: Dict[str, Any], shapes) -> bool:
    try:
        _build(jt.create_optimizer_v2, {'model_or_params': _tree(_arrays(shapes, 0)), 'opt': name, **kw})
    except ValueError:
        return True
    return False


@pytest.mark.parametrize('name', NAMES)
def test_reference_constructor_agrees(name):
    """Measured on timm's constructor: never laxer than it; stricter only where ``STRICTER`` says why."""
    timm_optim, _ = load_timm()
    ensure_reference(name)  # a name timm lacks: its reference class, through timm's factory
    info = jt.get_optimizer_info(name)
    alias_name = info.alias.__name__
    shapes = _shapes(alias_name)
    reference = inspect.signature(timm_optim.get_optimizer_info(name).opt_class).parameters
    problems = []
    for which in ('inside', 'outside'):
        for label, end, value, case_kw in _cases(name, which):
            arg = label.split('[')[0]
            key = 'lr' if arg == 'learning_rate' else arg
            if key not in reference or (arg == 'eps' and not info.has_eps) or (arg == 'betas' and not info.has_betas):
                continue  # ours only, or dropped by both factories
            kw = {('lr' if k == 'learning_rate' else k): v for k, v in case_kw.items()
                  if k != 'max_lr' and (k == arg or k in BASE_KWARGS.get(alias_name, {}) or
                                        case_kw[k] != _name_kwargs(name).get(k))}
            theirs, ours = _timm_refuses(timm_optim, name, kw, shapes), _ours_refuses(name, kw, shapes)
            reason = STRICTER.get((alias_name, label, end))
            if theirs and not ours:
                problems.append(f'{label}={value!r}: timm refuses, ours accepts')
            elif ours and not theirs and reason is None:
                problems.append(f'{label}={value!r}: ours refuses, timm accepts, and STRICTER gives no reason')
            elif reason is not None and which == 'outside' and theirs:
                problems.append(f'{label}={value!r}: STRICTER says timm accepts it, but timm refuses')
    assert not problems, f'{name}: ' + '; '.join(problems)
