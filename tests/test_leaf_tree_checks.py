"""Per-leaf hyperparameter trees are checked against the params at ``init`` (issue: a failure at the first update).

``jt.optim.adamw(weight_decay={'a': 0.1})`` used to pass construction and ``init`` and fail at the first
``update`` with a pytree-metadata message. Every tree argument (``weight_decay``, ``lr_scale`` and the record's
``fallback``, Muon's ``use_fallback``) is now refused at ``init``, naming the argument and the leaves.
"""
import jax
import jax.numpy as jnp
import pytest

import jaxopt_timm as jt

PARAMS = {'fc': {'weight': jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), 'bias': jnp.full((4,), 0.1)}}


def _cases():
    """(name, tree argument) for every registered name and every per-leaf tree argument its alias takes."""
    out = []
    for name in jt.list_optimizers():
        info = jt.get_optimizer_info(name)
        for argument in ('weight_decay', 'lr_scale', info.fallback):
            if argument and info.accepts(argument):
                out.append((name, argument))
    return out


CASES = _cases()


def _alias_tx(name, **kwargs):
    info = jt.get_optimizer_info(name)
    args = dict(info.defaults, learning_rate=1e-2, **kwargs)
    if info.has_momentum:
        args.setdefault('momentum', 0.9)
    return info.alias(**args)


def _value(argument, v):
    return bool(v) if argument == 'use_fallback' else v


def test_every_tree_argument_is_covered():
    arguments = {a for _, a in CASES}
    assert arguments == {'weight_decay', 'lr_scale', 'use_fallback'}, arguments
    # every alias but a wrapper's (SAM hands weight_decay to the optimizer it wraps)
    assert sum(a == 'weight_decay' for _, a in CASES) == len(
        [n for n in jt.list_optimizers() if jt.get_optimizer_info(n).base_argument is None])


@pytest.mark.parametrize('name,argument', CASES)
def test_mismatched_tree_refused_at_init(name, argument):
    tx = _alias_tx(name, **{argument: {'a': _value(argument, 0.1)}})
    with pytest.raises(ValueError, match=rf"Invalid {argument}: .*missing leaves \['fc\.bias', 'fc\.weight'\]; "
                                         rf"extra leaves \['a'\]"):
        tx.init(PARAMS)


@pytest.mark.parametrize('name,argument', CASES)
def test_partial_tree_names_the_missing_leaf(name, argument):
    tx = _alias_tx(name, **{argument: {'fc': {'weight': _value(argument, 0.5)}}})
    with pytest.raises(ValueError, match=rf"Invalid {argument}: .*missing leaves \['fc\.bias'\]; expected structure"):
        tx.init(PARAMS)


def test_same_names_in_other_containers():
    """A flat dict keyed by dotted names spells the same names: the message shows the expected structure."""
    tx = jt.optim.adamw(1e-2, weight_decay={'fc.weight': 0.1, 'fc.bias': 0.0})
    with pytest.raises(ValueError, match=r"Invalid weight_decay: .*same leaf names in other containers.*expected "
                                         r"structure PyTreeDef\(\{'fc': \{'bias': \*, 'weight': \*\}\}\)"):
        tx.init(PARAMS)


@pytest.mark.parametrize('name', ['adamw', 'lamb', 'muon', 'sgd'])
def test_fitting_trees_still_step(name):
    info = jt.get_optimizer_info(name)
    trees = {'weight_decay': {'fc': {'weight': 0.1, 'bias': 0.0}}, 'lr_scale': {'fc': {'weight': 1.0, 'bias': 0.5}}}
    if info.fallback:
        trees[info.fallback] = {'fc': {'weight': False, 'bias': True}}
    tx = _alias_tx(name, **{k: v for k, v in trees.items() if info.accepts(k)})
    updates, _ = jax.jit(tx.update)(PARAMS, tx.init(PARAMS), PARAMS)
    assert float(jnp.abs(updates['fc']['weight']).max()) > 0


def test_update_without_params_checks_trees_against_grads():
    tx = jt.optim.sgd(1e-2, momentum=0.9, lr_scale={'fc': {'weight': 1.0, 'bias': 0.5}})
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"Invalid lr_scale: a per-leaf tree must have the grads' structure.*"
                                         r"extra leaves \['fc\.bias'\]"):
        tx.update({'fc': {'weight': PARAMS['fc']['weight']}}, state)
