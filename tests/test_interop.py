"""Optimizer state across frameworks (``jt.interop``): runs that cross between timm and ours mid-training.

For every registered name whose state can cross: ``n`` steps in timm, ``from_timm``, ``m`` steps here, against
timm's uninterrupted ``n + m`` steps; and ``n`` steps here, ``to_timm``, ``load_state_dict``, ``m`` steps in timm.
Both within the parity tolerance. The names that cannot cross are listed with their reason and must refuse.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from _crossing import TimmRun, cross
from jaxopt_timm.interop import TIMM_STATE
from jaxopt_timm.parity import TOL, load_timm, make_arrays, to_tree

NAMES = jt.list_optimizers()
# the names whose state does not cross yet, and why (each must refuse with a ValueError saying so)
EXCLUDED = {name: TIMM_STATE[jt.get_optimizer_info(name).timm_class].unsupported for name in NAMES
            if TIMM_STATE[jt.get_optimizer_info(name).timm_class].unsupported}
CROSSING = [n for n in NAMES if n not in EXCLUDED]
# a tree whose matrices timm's Adafactor factors (both sides >= 16) and whose conv has a non-trivial Flax layout
BIG = {'conv.weight': (24, 16, 3, 3), 'conv.bias': (24,), 'fc.weight': (20, 40), 'fc.bias': (20,), 'gamma': (1,)}
MATCHER = {'stem': r'^conv|^pos_embed|^gamma', 'blocks': r'^norm'}  # three layers: stem, norm, head (fc)


def _check(results):
    for direction, r in results.items():
        assert r.displacement > 1e-2, (direction, r.displacement)
        assert r.rel_err <= TOL, f'{direction}: {r.rel_err:.3g} > {TOL} (worst leaf {r.worst_leaf()})'


# at lr 1e-2 these barely move in ten steps: their own default lr (adadelta, prodigy), or longer runs past
# RAdam's silent first steps
SETUP = {'adadelta': dict(lr=1.0), 'prodigy': dict(lr=1.0), 'sfradam': dict(lr=3e-2, n=8, m=8)}


@pytest.mark.parametrize('name', CROSSING)
def test_crossing_run_equals_the_uninterrupted_one(name):
    _check(cross(name, **SETUP.get(name, {})))


@pytest.mark.parametrize('name,kwargs', [
    ('adamw', dict(layout='flax', shapes=BIG)),
    ('adafactor', dict(layout='flax', shapes=BIG)),      # factored rows/columns, squeezed in timm
    ('adafactor', dict(shapes=BIG)),
    ('adafactorbv', dict(layout='flax', shapes=BIG)),    # factored, keepdims in timm
    ('muon', dict(layout='flax', shapes=BIG)),           # the routing follows the torch shape
    ('adamuon', dict(fallback_list=['fc.*'])),           # fallback groups come after the others in timm
    ('lamb', dict(layer_decay=0.7, group_matcher=MATCHER)),
    ('nadamw', dict(layer_decay=0.6, group_matcher=MATCHER, weight_decay=0.0)),
    ('sgd', dict(weight_decay=0.0, momentum=0.8)),
    ('lookahead_adamw', dict(n=8, m=6)),                 # slow weights made at the first sync (step 6)
    ('lookahead_sgd', dict(n=4, m=6)),                   # crossing before the first sync
    ('adamw', dict(amsgrad=True)),
    ('sfadamw', dict(warmup_steps=4, n=3, m=6)),         # crossing inside the warmup
    ('prodigy', dict(lr=1.0, shapes=BIG)),               # s and p0 flattened in torch order by the reference
    ('kron', dict(layout='flax')),                       # Q in torch dim order, a vector for diagonal dims
    ('soap', dict(layout='flax', shapes=BIG, n=12, m=9, precondition_frequency=3, max_precondition_dim=30)),
])
def test_crossing_with_layouts_and_groups(name, kwargs):
    _check(cross(name, **kwargs))


@pytest.mark.parametrize('name', sorted(EXCLUDED))
def test_names_that_cannot_cross_refuse(name):
    params = to_tree({k: jnp.asarray(v) for k, v in make_arrays(0)[0].items()})
    names = jt.optim.named_leaves(params)
    names = [n for n, _ in names]
    tx = jt.create_optimizer_v2(params, name, lr=1e-2)
    with pytest.raises(ValueError, match='cannot cross'):
        jt.interop.to_timm(tx.init(params), params, names, name, lr=1e-2)
    with pytest.raises(ValueError, match='cannot cross'):
        jt.interop.from_timm({'state': {}, 'param_groups': []}, params, names, name, lr=1e-2)


def test_specs_match_the_references():
    """Every reference class's entry against its own state_dict after two steps: each per-param key has a
    place here (renamed, shared, derived or as is), the step lives where the entry says, Python numbers are
    the types it says."""
    seen = {}
    for name in NAMES:
        info = jt.get_optimizer_info(name)
        if info.timm_class in seen or info.timm_class not in TIMM_STATE:
            continue
        spec = TIMM_STATE[info.timm_class]
        seen[info.timm_class] = name
        init, a, b, d = make_arrays(0)
        run = TimmRun(name, init, (a, b, d), {'lr': 1e-2, 'weight_decay': 0.01})
        run.step(0), run.step(1)
        sd = run.opt.state_dict()
        state = next(iter(sd['state'].values()))
        group = sd['param_groups'][0]
        where = ('param_' + ('int' if isinstance(state['step'], int) else 'tensor') if 'step' in state else
                 'group_' + ('int' if isinstance(group['step'], int) else 'tensor') if 'step' in group else None)
        assert where == spec.step, (info.timm_class, where, spec.step)
        for key, value in state.items():
            if key in spec.python:
                assert type(value) is spec.python[key], (info.timm_class, key, type(value))
            elif key in spec.indexed:
                assert isinstance(value, list), (info.timm_class, key, type(value))
            elif key != 'step' and not spec.unsupported:
                assert hasattr(value, 'shape'), (info.timm_class, key, type(value))
    assert set(seen) == set(TIMM_STATE), sorted(set(TIMM_STATE) - set(seen))


def _setup(name='adamw', **kwargs):
    init, a, b, d = make_arrays(0)
    run = TimmRun(name, init, (a, b, d), {'lr': 1e-2, 'weight_decay': 0.01, **kwargs})
    run.step(0), run.step(1)
    names = [n for n, _ in run.module.named_parameters()]
    params = to_tree({k: jnp.asarray(v) for k, v in run.params().items()})
    return run, run.opt.state_dict(), params, names


def test_a_wrong_step_count_would_be_caught():
    """The crossing test is not vacuous: a state with the step count off by one (a missing bias correction's
    worth) moves the continued run well outside the tolerance."""
    results = {}
    for shift in (0, 3):
        run, sd, params, names = _setup()
        for s in sd['state'].values():
            s['step'] = s['step'] + shift
        state = jt.interop.from_timm(sd, params, names, 'adamw', lr=1e-2, weight_decay=0.01)
        counts = [int(x) for x in jax.tree.leaves(state) if np.ndim(x) == 0 and x.dtype == jnp.int32]
        results[shift] = counts
    assert set(results[0]) == {2} and set(results[3]) == {5}


def test_bad_input_raises_clear_errors():
    run, sd, params, names = _setup()
    kw = dict(lr=1e-2, weight_decay=0.01)
    with pytest.raises(ValueError, match='params without a name'):
        jt.interop.from_timm(sd, params, names[:-1], 'adamw', **kw)
    with pytest.raises(ValueError, match='names without a param'):
        jt.interop.from_timm(sd, params, names + ['head.weight'], 'adamw', **kw)
    with pytest.raises(ValueError, match='param groups of sizes'):
        jt.interop.from_timm(sd, params, names, 'adamw', lr=1e-2, weight_decay=0.0)
    with pytest.raises(ValueError, match="lacks 'exp_avg'"):  # a momentum SGD state_dict read as AdamW's
        _, sgd_sd, _, _ = _setup('momentum')
        jt.interop.from_timm(sgd_sd, params, names, 'adamw', **kw)
    with pytest.raises(ValueError, match="lacks 'momentum_buffer'"):  # an AdamW state_dict read as SGD's
        jt.interop.from_timm(sd, params, names, 'momentum', **kw)
    with pytest.raises(ValueError, match="has .'max_exp_avg_sq'., which 'adamw' here has no place for"):
        _, ams_sd, _, _ = _setup('adamw', amsgrad=True)
        jt.interop.from_timm(ams_sd, params, names, 'adamw', **kw)
    swapped = dict(params, fc={'weight': params['fc']['weight'].T, 'bias': params['fc']['bias']})
    with pytest.raises(ValueError, match="'fc.weight'"):
        jt.interop.from_timm(sd, swapped, names, 'adamw', **kw)
    with pytest.raises(ValueError, match='expected an optimizer state_dict'):
        jt.interop.from_timm({'exp_avg': 1}, params, names, 'adamw', **kw)
    with pytest.raises(ValueError, match='Invalid layout'):
        jt.interop.from_timm(sd, params, names, 'adamw', layout='jax', **kw)
    tx = jt.create_optimizer_v2(params, 'adamw', **kw)
    with pytest.raises(ValueError, match='Invalid opt_state'):
        jt.interop.to_timm(tx.init(params), params, names, 'lion', **kw)
    with pytest.raises(ValueError, match='pass step='):
        schedule = lambda t: 1e-2  # noqa: E731
        _, sgd_sd, _, _ = _setup('momentum')
        jt.interop.from_timm(sgd_sd, params, names, 'momentum', lr=schedule, weight_decay=0.01)


def test_param_order_follows_timms_groups():
    run, sd, params, names = _setup()
    order = jt.interop.timm_param_order(params, names, weight_decay=0.01)
    by_id = {id(p): n for n, p in run.module.named_parameters()}
    assert order == [by_id[id(p)] for g in run.opt.param_groups for p in g['params']]
    assert order[0] == 'gamma' and order[-1] in ('fc.weight', 'pos_embed', 'conv.weight')


def _timm_plateau(lr, epochs):
    import torch
    _, timm_sched = load_timm()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    with warnings.catch_warnings():  # timm 1.0.31 deprecates it (its state is not checkpointed)
        warnings.filterwarnings('ignore', message='PlateauLRScheduler is deprecated', category=FutureWarning)
        sched, _ = timm_sched.create_scheduler_v2(opt, sched='plateau', num_epochs=epochs, patience_epochs=1,
                                                  decay_rate=0.5, cooldown_epochs=1, warmup_epochs=0)
    return opt, sched


def _metric(epoch):
    return 1.0 / (1 + min(epoch, 3))  # improves for three epochs, then a plateau: reductions and cooldowns


def test_plateau_state_crosses_as_a_timm_resume_does():
    """timm for 5 epochs, its state_dicts into ours, 7 more epochs here; against timm resumed from the same
    state_dicts (a fresh scheduler loading them): the same lr every epoch. And back: ours -> timm -> ours."""
    lr, first, more = 0.1, 5, 7
    opt, sched = _timm_plateau(lr, first + more)
    for epoch in range(first):
        sched.step(epoch + 1, _metric(epoch))
    sched_sd, opt_sd = sched.state_dict(), opt.state_dict()
    opt2, sched2 = _timm_plateau(lr, first + more)  # timm's own resume
    opt2.load_state_dict(opt_sd), sched2.load_state_dict(sched_sd)
    ours, _ = jt.create_scheduler_v2(lr, 'plateau', num_epochs=first + more, patience_epochs=1, decay_rate=0.5,
                                     cooldown_epochs=1, warmup_epochs=0)
    state = jt.interop.plateau_from_timm(sched_sd, ours, opt_sd)
    theirs_lr, ours_lr = [], []
    for epoch in range(first, first + more):
        sched2.step(epoch + 1, _metric(epoch))
        state, _ = ours.step(state, epoch + 1, _metric(epoch))
        theirs_lr.append(opt2.param_groups[0]['lr'])
        ours_lr.append(float(state.lr))
    assert len(set(theirs_lr)) > 2, theirs_lr  # the lr was reduced while crossing's state mattered
    np.testing.assert_allclose(ours_lr, theirs_lr, rtol=1e-6)
    back = jt.interop.plateau_to_timm(state)
    assert back == {'best': pytest.approx(sched2.state_dict()['best']), 'last_epoch': sched2.state_dict()['last_epoch']}
    with pytest.raises(ValueError, match='expected a PlateauSchedule'):
        jt.interop.plateau_from_timm(sched_sd, jt.create_scheduler_v2(lr, 'cosine', num_epochs=3)[0])
    with pytest.raises(ValueError, match="no \\['best'\\]"):
        jt.interop.plateau_from_timm({'last_epoch': 3}, ours)


def test_to_timm_without_timm_gives_minimal_groups(monkeypatch):
    """Where timm cannot be loaded the state still converts; the groups carry what this package knows."""
    run, sd, params, names = _setup()
    kw = dict(lr=1e-2, weight_decay=0.01)
    state = jt.interop.from_timm(sd, params, names, 'adamw', **kw)
    import jaxopt_timm.parity as parity

    def missing():
        raise parity.TimmNotInstalled('timm is not installed')
    monkeypatch.setattr(parity, 'load_timm', missing)
    out = jt.interop.to_timm(state, params, names, 'adamw', **kw)
    assert [{k: v for k, v in g.items() if k != 'params'} for g in out['param_groups']] == [
        {'weight_decay': 0.0, 'lr': 1e-2}, {'weight_decay': 0.01, 'lr': 1e-2}]
    assert [g['params'] for g in out['param_groups']] == [g['params'] for g in sd['param_groups']]
    for i, s in sd['state'].items():
        for key in ('exp_avg', 'exp_avg_sq', 'step'):
            np.testing.assert_allclose(np.asarray(out['state'][i][key]), np.asarray(s[key]), rtol=1e-6)


def test_plateau_lr_is_read_without_the_groups_lr_scale():
    ours, _ = jt.create_scheduler_v2(0.1, 'plateau', num_epochs=10)
    sd = {'param_groups': [{'lr': 0.005, 'lr_scale': 0.5}, {'lr': 0.01, 'lr_scale': 1.0}]}
    state = jt.interop.plateau_from_timm({'best': 0.3, 'last_epoch': 4}, ours, sd)
    assert float(state.lr) == pytest.approx(0.01) and int(state.last_epoch) == 4
