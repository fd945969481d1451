"""Every registered optimizer composes with optax's wrappers and combinators.

Per name, one jitted program (compilation is the cost; it is traced once)
checks, each against the bare optimizer on the same gradients:

- ``chain``: ``optax.chain(optax.clip_by_global_norm(c), tx)`` equals ``tx`` fed
  the clipped gradients;
- ``apply_if_finite``: a non-finite gradient leaves the inner state untouched
  and gives zero updates; the next finite step equals ``tx``'s first step;
- ``multisteps``: ``optax.MultiSteps(tx, every_k_schedule=2)`` emits zeros, then
  ``tx``'s update on the mean of the two micro-batch gradients;
- ``multi_transform``: ``tx`` on the matrices, SGD on the rest, equals ``tx``
  run on the tree of matrices alone (statistics over all leaves, such as
  Lamb's global grad norm, are over the leaves it is given);
- ``inject_hyperparams``: ``optax.inject_hyperparams(alias)`` with the lr and
  the weight decay changed between two steps, the step traced exactly once,
  equals the alias rebuilt with each step's floats.

``KNOWN_ISSUES`` lists the (name, property) pairs that fail today; the test
asserts the failing set per name equals it exactly, so a fix or a new failure
both show.
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from _fast_jit import fast_jit

NAMES = list(jt.list_optimizers()) + ['lookahead_adamw']
PROPERTIES = ('chain', 'apply_if_finite', 'multisteps', 'multi_transform', 'inject_hyperparams')
RTOL = 1e-6
LR, WD = 1e-2, 0.01
LR2, WD2 = 4e-3, 0.05  # the second step's hyperparameters under inject_hyperparams

# (name, property) -> why it fails; asserted exactly.
KNOWN_ISSUES = {}


def _params():
    shapes = {
        'conv': {'weight': (8, 4, 3, 3), 'bias': (8,)},
        'fc': {'weight': (20, 18), 'bias': (20,)},  # factored by adafactor
        'norm': {'weight': (8,)},
        'scale': (1,),
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    return jax.tree.unflatten(treedef, [1.0 + 0.3 * jax.random.normal(k, s) for k, s in zip(keys, leaves)])


PARAMS = _params()


def _grads(seed, scale=1.0):
    leaves, treedef = jax.tree.flatten(PARAMS)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)])


G1, G2 = _grads(1), _grads(2, 0.5)
G_NAN = jax.tree.map(lambda g: g, G1)
G_NAN['fc']['weight'] = G1['fc']['weight'].at[0, 0].set(jnp.nan)
LABELS = jax.tree.map(lambda p: 'opt' if p.ndim >= 2 else 'rest', PARAMS)
SUBTREE = {'conv': {'weight': PARAMS['conv']['weight']}, 'fc': {'weight': PARAMS['fc']['weight']}}


def _sub(tree):
    return {'conv': {'weight': tree['conv']['weight']}, 'fc': {'weight': tree['fc']['weight']}}


def _info(name):
    return jt.get_optimizer_info(name.split('_')[-1])


def _extra(name):
    # an identity Hessian: H v = v for any tree, so it also serves a masked subtree
    return {'hvp_fn': lambda v: v} if _info(name).second_order else {}


def _alias_factory(name):
    """``(factory, kwargs)``: the alias with the name's registry defaults (a Lookahead-wrapped one for the prefix)."""
    info = _info(name)
    defaults = dict(info.defaults)
    if info.has_momentum:
        defaults.setdefault('momentum', 0.9)  # as create_optimizer_v2 (nesterov names need it)
    if name.startswith('lookahead_'):
        def factory(**kwargs):
            return jt.optim.lookahead(info.alias(**kwargs))
        factory.__signature__ = inspect.signature(info.alias)  # what inject_hyperparams binds against
        return factory, defaults
    return info.alias, defaults


def _close(ours, ref, params=None):
    """Updates agree: per leaf ``max|p + ours - (p + ref)| <= RTOL * max|p + ref|`` (params-relative, as the
    multi-device tests measure; comparing bare updates would make cancellation inside MADGRAD's or Adan's
    update, ulps of ``p`` divided by the lr, look like a difference). Structures must match."""
    if jax.tree.structure(ours) != jax.tree.structure(ref):
        return False
    params = PARAMS if params is None else params
    for a, b, p in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), jax.tree.leaves(params)):
        a, b, p = (np.asarray(x, np.float64) for x in (a, b, p))
        if a.shape != b.shape or not np.all(np.isfinite(a)):
            return False
        if np.max(np.abs(a - b), initial=0.0) > RTOL * np.max(np.abs(p + b), initial=0.0):
            return False
    return True


def _equal(ours, ref):
    return jax.tree.structure(ours) == jax.tree.structure(ref) and all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)))


def _run(name):
    """Each property's outcome for ``name``: ``{property: '' if it holds else why not}``."""
    extra = _extra(name)
    tx = jt.create_optimizer_v2(PARAMS, name, lr=LR, weight_decay=WD)
    factory, defaults = _alias_factory(name)
    out = {}

    def guarded(prop, fn):
        try:
            why = fn()
        except Exception as e:  # noqa: BLE001 - the table records the error
            why = f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'[:300]
        out[prop] = why

    # ---- the wrappers and combinators that need no changing hyperparameters: one program
    clip = optax.clip_by_global_norm(0.5)
    chained = optax.chain(clip, tx)
    finite = optax.apply_if_finite(tx, max_consecutive_errors=3)
    multi = optax.MultiSteps(tx, every_k_schedule=2)
    alias_tx = factory(learning_rate=LR, weight_decay=WD, **defaults)
    split = optax.multi_transform({'opt': alias_tx, 'rest': optax.sgd(0.1)}, LABELS)

    def programs():
        s0 = tx.init(PARAMS)
        res = {}
        g_clip, _ = clip.update(G1, clip.init(PARAMS))
        res['chain'] = (chained.update(G1, chained.init(PARAMS), PARAMS, **extra), tx.update(g_clip, s0, PARAMS, **extra))
        f0 = finite.init(PARAMS)
        u_nan, f1 = finite.update(G_NAN, f0, PARAMS, **extra)
        u_ok, f2 = finite.update(G1, f1, PARAMS, **extra)
        res['apply_if_finite'] = (u_nan, f1, u_ok, f2, tx.update(G1, s0, PARAMS, **extra), s0)
        m0 = multi.init(PARAMS)
        # optax's MultiSteps divides a float by its int32 micro-step count: only standard promotion accepts it
        with jax.numpy_dtype_promotion('standard'):
            u_m1, m1 = multi.update(G1, m0, PARAMS, **extra)
            u_m2, m2 = multi.update(G2, m1, PARAMS, **extra)
        g_mean = jax.tree.map(lambda a, b: (a + b) / 2, G1, G2)
        res['multisteps'] = (u_m1, u_m2, tx.update(g_mean, s0, PARAMS, **extra))
        res['multi_transform'] = (split.update(G1, split.init(PARAMS), PARAMS, **extra),
                                  alias_tx.update(_sub(G1), alias_tx.init(SUBTREE), SUBTREE, **extra))
        return res

    results = {}

    def run_programs():
        results.update(fast_jit(programs)())
        return ''

    guarded('programs', run_programs)
    failed = out.pop('programs')
    if failed:
        for prop in PROPERTIES[:4]:
            out[prop] = 'program failed: ' + failed
    if results:
        def chain_check():
            (u, _), (ref, _) = results['chain']
            return '' if _close(u, ref) else 'differs from tx fed the clipped gradients'

        def finite_check():
            u_nan, f1, u_ok, f2, (ref, _), s0 = results['apply_if_finite']
            if any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(u_nan)):
                return 'non-finite step gave non-zero updates'
            if not _equal(f1.inner_state, s0) or int(f1.notfinite_count) != 1:
                return 'non-finite step changed the inner state'
            return '' if _close(u_ok, ref) else 'finite step differs from tx'

        def multisteps_check():
            u_m1, u_m2, (ref, _) = results['multisteps']
            if any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(u_m1)):
                return 'first micro-step gave non-zero updates'
            return '' if _close(u_m2, ref) else 'differs from tx on the mean gradient'

        def split_check():
            (u, _), (ref, _) = results['multi_transform']
            sgd_ok = _close(u['conv']['bias'], -0.1 * G1['conv']['bias'], PARAMS['conv']['bias'])
            return '' if _close(_sub(u), ref, SUBTREE) and sgd_ok else 'differs from tx on the subtree'

        for prop, fn in (('chain', chain_check), ('apply_if_finite', finite_check),
                         ('multisteps', multisteps_check), ('multi_transform', split_check)):
            guarded(prop, fn)

    # ---- inject_hyperparams: lr and weight decay are traced; everything else static
    def inject_check():
        static = [n for n in inspect.signature(factory).parameters if n not in ('learning_rate', 'weight_decay')]
        injected = optax.inject_hyperparams(factory, static_args=static)(
            learning_rate=LR, weight_decay=WD, **defaults)
        traces = []

        def step(g, s, p):
            traces.append(1)
            return injected.update(g, s, p, **extra)

        step = fast_jit(step)
        s = injected.init(PARAMS)
        u1, s = step(G1, s, PARAMS)
        p1 = optax.apply_updates(PARAMS, u1)
        s = s._replace(hyperparams={**s.hyperparams, 'learning_rate': jnp.asarray(LR2, jnp.float32),
                                    'weight_decay': jnp.asarray(WD2, jnp.float32)})
        u2, s = step(G2, s, p1)
        if len(traces) != 1:
            return f'traced {len(traces)} times'
        ref1_tx = factory(learning_rate=LR, weight_decay=WD, **defaults)
        ref2_tx = factory(learning_rate=LR2, weight_decay=WD2, **defaults)
        r1, rs = fast_jit(lambda g, s, p: ref1_tx.update(g, s, p, **extra))(G1, ref1_tx.init(PARAMS), PARAMS)
        r2, _ = fast_jit(lambda g, s, p: ref2_tx.update(g, s, p, **extra))(G2, rs, optax.apply_updates(PARAMS, r1))
        if not _close(u1, r1):
            return 'first step differs from the alias'
        return '' if _close(u2, r2, p1) else 'second step (new lr, weight decay) differs from the alias rebuilt with them'

    guarded('inject_hyperparams', inject_check)
    return out


def test_known_issues_name_registered_pairs():
    for name, prop in KNOWN_ISSUES:
        assert name in NAMES and prop in PROPERTIES, (name, prop)


@pytest.mark.parametrize('name', NAMES)
def test_composition(name):
    outcome = _run(name)
    failing = {prop: why for prop, why in outcome.items() if why}
    expected = {prop for (n, prop) in KNOWN_ISSUES if n == name}
    assert set(failing) == expected, (
        f'{name}: failing {failing}, known issues {sorted(expected)} (update KNOWN_ISSUES if fixed)')
