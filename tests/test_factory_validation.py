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
        jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-3, param_group_fn=lambda n, l: {'betas': (2.0, 0.999)})


def test_valid_overrides_still_build():
    tx = jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-3, param_group_fn=lambda n, l: {'lr_scale': 0.0})
    updates, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))
