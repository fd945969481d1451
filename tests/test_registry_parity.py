"""The registry drives the parity table: every registered name runs against timm's own factory.

(For a name timm lacks, timm's factory builds the reference class its record names, see
:mod:`jaxopt_timm.parity._references`.)

A name added to the registry is tested here without anyone remembering to:
timm's ``create_optimizer_v2(module, name, ...)`` and ours on the same tree,
with weight decay off and on (timm's grouping: no decay on 1-d leaves and
``.bias`` names), 30 steps, float32, in the reference mode its record names.
The rectified and Nesterov-scheduled names also run 120 steps (``test_long_run_factory``).
"""
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import DEFAULT_LR, factory_parity, load_timm, reference_parity

NAMES = jt.list_optimizers()
TIMM_NAMES = [n for n in NAMES if jt.get_optimizer_info(n).source == 'timm']
OTHER_NAMES = [n for n in NAMES if n not in TIMM_NAMES]  # timm lacks them: each names its own reference


@pytest.mark.parametrize('weight_decay', [0.0, 0.05])
@pytest.mark.parametrize('name', NAMES)
def test_factory_parity(name, weight_decay):
    """Each name in its record's reference mode (``parity_mode``: float32 Newton-Schulz for the muon family, no
    preconditioner refit for the kron family; see jaxopt_timm.parity), so the float32 bound applies to all."""
    reference_parity(name, weight_decay=weight_decay, lr=DEFAULT_LR).check()


@pytest.mark.parametrize('name', ['lookahead_' + n for n in ('sgd', 'adamw')])
def test_lookahead_prefix_parity(name):
    factory_parity(name, weight_decay=0.05, lr=DEFAULT_LR).check()


def test_every_timm_name_is_registered():
    """Fails for any optimizer timm lists that we lack (the external bnb*/fused* backends excepted)."""
    timm_optim, _ = load_timm()
    theirs = set(timm_optim.list_optimizers(exclude_filters=['bnb*', 'fused*']))
    missing = sorted(theirs - set(jt.list_optimizers()))
    assert not missing, f'timm optimizers without a port: {missing}'


def test_every_name_is_timms():
    """Every name whose record says ``source='timm'`` is timm's (the others are timm's factory's only once
    :func:`jaxopt_timm.parity.ensure_reference` has registered their reference there)."""
    timm_optim, _ = load_timm()
    theirs = set(timm_optim.list_optimizers())
    assert set(TIMM_NAMES) <= theirs, f'names timm does not have: {sorted(set(TIMM_NAMES) - theirs)}'


@pytest.mark.parametrize('name', OTHER_NAMES)
def test_other_names_follow_an_installed_reference(name):
    """A name timm lacks names its reference as '<PyPI package> <version>' and its class; that exact version is
    installed and the class importable (a parity check against another version would not be the one recorded)."""
    import importlib
    import importlib.metadata
    info = jt.get_optimizer_info(name)
    package, _, version = info.source.partition(' ')
    assert version, info.source
    assert importlib.metadata.version(package) == version, (name, package)
    module, cls = info.timm_class.rsplit('.', 1)
    assert hasattr(importlib.import_module(module), cls), info.timm_class


FOUNDATION_NAMES = """
adabelief radabelief adafactor adahessian adamp adamw adamwlegacy lamb lambc lambw lambcw lambcd
lars larc nlars nlarc madgrad madgradw nadam nadamlegacy novograd novogradw novogradc radam radamw
radamlegacy rmsproptf rmsproptfw rmsproptfc sgdp sgd momentum nesterov
""".split()


def test_foundation_names_registered():
    missing = sorted(set(FOUNDATION_NAMES) - set(jt.list_optimizers()))
    assert not missing, f'documented timm optimizers missing from the registry: {missing}'


def test_registry_records_match_timm():
    timm_optim, _ = load_timm()
    for name in TIMM_NAMES:
        ours, theirs = jt.get_optimizer_info(name), timm_optim.get_optimizer_info(name)
        for field in ('description', 'has_eps', 'has_momentum', 'has_betas', 'num_betas', 'second_order'):
            assert getattr(ours, field) == getattr(theirs, field), (name, field)
        assert dict(ours.defaults) == dict(theirs.defaults or {}), name


# subsumed by test_registry_records_match_timm (every name, same fields); kept from the per-family files
LAMB_NAMES = ['lamb', 'lambc', 'lambw', 'lambcw', 'lambcd', 'clamb', 'clambw']
LARS_NAMES = ['lars', 'larc', 'nlars', 'nlarc']


def test_registry_records():
    timm_optim, _ = load_timm()
    for name in LAMB_NAMES + LARS_NAMES:
        ours, theirs = jt.get_optimizer_info(name), timm_optim.get_optimizer_info(name)
        assert ours.description == theirs.description
        assert dict(ours.defaults) == dict(theirs.defaults or {})
        for key in ('has_eps', 'has_momentum', 'has_betas', 'num_betas', 'second_order'):
            assert getattr(ours, key) == getattr(theirs, key), (name, key)


def test_registry_entries_match_timm():
    timm_optim, _ = load_timm()
    for name in ('adabelief', 'radabelief', 'radam', 'radamw', 'radamlegacy', 'nadam', 'nadamlegacy'):
        ours, theirs = jt.get_optimizer_info(name), timm_optim.get_optimizer_info(name)
        assert ours.description == theirs.description
        for field in ('has_eps', 'has_momentum', 'has_betas', 'num_betas', 'second_order'):
            assert getattr(ours, field) == getattr(theirs, field), (name, field)
        assert dict(ours.defaults) == dict(theirs.defaults or {}), name


@pytest.mark.parametrize('name,kwargs', [
    ('radabelief', dict(betas=(0.9, 0.99))),
    ('radam', dict(betas=(0.9, 0.99))),
    ('nadam', dict()),
])
def test_long_run_factory(name, kwargs):
    factory_parity(name, steps=120, lr=3e-3, weight_decay=0.05, **kwargs).check()
