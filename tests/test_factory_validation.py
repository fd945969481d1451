"""The factory refuses bad input at construction, naming the argument, its value and what is accepted.

Each case failed silently before: an empty params tree built a transformation that passed gradients
through as updates (``apply_updates`` then ascended), and ``param_group_fn`` overrides were not checked
(a negative ``lr_scale`` ascended, ``nan`` gave NaN, a string failed with float()'s own message).
"""
import re

import jax
import jax.numpy as jnp
import pytest

import jaxopt_timm as jt

PARAMS = {'fc': {'weight': jnp.ones((4, 3)), 'bias': jnp.zeros(4)}}


@pytest.mark.parametrize('tree', [None, {}, [], (), {'a': {}}, {'a': None}], ids=repr)
@pytest.mark.parametrize('name', ['adamw', 'sgd', 'lamb'])
def test_empty_params_tree_is_refused(tree, name):
    with pytest.raises(ValueError, match=r'Invalid model_or_params: .* has no parameters'):
        jt.create_optimizer_v2(tree, name, lr=1e-3)


@pytest.mark.parametrize('override, value_text', [
    ({'lr_scale': -1.0}, '-1.0'),
    ({'lr_scale': float('nan')}, 'nan'),
    ({'lr_scale': float('inf')}, 'inf'),
    ({'weight_decay': 'x'}, "'x'"),
    ({'weight_decay': -0.1}, '-0.1'),
    ({'weight_decay': None}, 'None'),
], ids=repr)
@pytest.mark.parametrize('pack_leaves', [None, 4])
def test_param_group_fn_overrides_are_checked(override, value_text, pack_leaves):
    key = next(iter(override))

    def groups(name, leaf):
        return dict(override) if name == 'fc.weight' else {}

    pattern = re.escape(f"Invalid param_group_fn('fc.weight')['{key}']: {value_text}")
    with pytest.raises(ValueError, match=pattern + r'.*\[0, inf\)'):
        jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-3, param_group_fn=groups, pack_leaves=pack_leaves)


def test_param_group_fn_alias_arguments_use_the_alias_checks():
    with pytest.raises(ValueError, match=r'Invalid betas\[0\]: 2.0'):
        jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-3, param_group_fn=lambda n, leaf: {'betas': (2.0, 0.999)})


def test_valid_overrides_still_build():
    tx = jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-3, param_group_fn=lambda n, leaf: {'lr_scale': 0.0})
    updates, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))


VIT = {'blocks': {'0': {'weight': jnp.ones((4, 3))}}, 'pos_embed': jnp.ones((1, 2, 3))}


@pytest.mark.parametrize('kwargs, pattern', [
    # a bare string was iterated as its characters: 'pos_embed' silently matched nothing
    (dict(no_weight_decay_list='pos_embed'), r"Invalid no_weight_decay_list: 'pos_embed' is a bare string"),
    (dict(no_weight_decay_list=[3]), r'Invalid no_weight_decay_list: entries \[3\] are not strings'),
    (dict(no_weight_decay_list=5), r'Invalid no_weight_decay_list: 5, expected a list'),
    (dict(fallback_list='blocks.*'), r"Invalid fallback_list: 'blocks.\*' is a bare string"),
    # re.error / TypeError surfaced without the argument's name
    (dict(layer_decay=0.7, group_matcher={'blocks': r'^blocks\.(\d+'}),
     r"Invalid group_matcher\['blocks'\]: .* is not a regular expression"),
    (dict(layer_decay=0.7, group_matcher={'blocks': [(r'^blocks', None, 1)]}),
     r"Invalid group_matcher\['blocks'\]: entry .*expected \(regex, suffix\)"),
    (dict(layer_decay=0.7, group_matcher=5), r'Invalid group_matcher: 5, expected timm'),
    (dict(group_matcher=[r'^blocks']), r'Invalid group_matcher: .*expected timm'),
    (dict(param_group_fn={'lr_scale': 2.0}), r'Invalid param_group_fn: .*expected a callable'),
], ids=lambda v: repr(v)[:60])
def test_grouping_arguments_are_checked(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        jt.create_optimizer_v2(VIT, 'adamw', lr=1e-3, weight_decay=0.05, **kwargs)


def test_weight_decay_tree_refuses_a_bare_string():
    with pytest.raises(ValueError, match='bare string'):
        jt.optim.weight_decay_tree(VIT, 0.05, no_weight_decay_list='pos_embed')
    tree = jt.optim.weight_decay_tree(VIT, 0.05, no_weight_decay_list=['pos_embed'])
    assert tree['pos_embed'] == 0.0 and tree['blocks']['0']['weight'] == 0.05
