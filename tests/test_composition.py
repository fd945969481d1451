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
- ``inject_hyperparams``: ``optax.inject_hyperparams(alias)`` with its numeric
  hyperparameters traced (the lr, and where the alias takes them as numbers
  the weight decay, momentum and eps; tuples such as ``betas`` stay static),
  the lr and weight decay changed before every step and momentum and eps
  before the third, the step traced exactly once over three steps, equals the
  alias rebuilt with each step's floats.

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
from _steps import update_extras

NAMES = list(jt.list_optimizers()) + ['lookahead_adamw']
PROPERTIES = ('chain', 'apply_if_finite', 'multisteps', 'multi_transform', 'inject_hyperparams')
RTOL = 1e-6
LR, WD = 1e-2, 0.01
# per-step (lr, weight decay) under inject_hyperparams; momentum and eps change before the third step
STEP_LR_WD = ((LR, WD), (4e-3, 0.05), (7e-3, 0.02))
INJECTED = ('learning_rate', 'weight_decay', 'momentum', 'eps')

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


G1, G2, G3 = _grads(1), _grads(2, 0.5), _grads(3, 0.7)
G_NAN = jax.tree.map(lambda g: g, G1)
G_NAN['fc']['weight'] = G1['fc']['weight'].at[0, 0].set(jnp.nan)
LABELS = jax.tree.map(lambda p: 'opt' if p.ndim >= 2 else 'rest', PARAMS)
SUBTREE = {'conv': {'weight': PARAMS['conv']['weight']}, 'fc': {'weight': PARAMS['fc']['weight']}}


def _sub(tree):
    return {'conv': {'weight': tree['conv']['weight']}, 'fc': {'weight': tree['fc']['weight']}}


def _info(name):
    return jt.get_optimizer_info(name)


def _extra(name):
    return update_extras(name)  # stand-ins valid on any subtree, so they also serve a masked one


def _alias_factory(name):
    """``(factory, kwargs)``: the alias with the name's registry defaults (a Lookahead-wrapped one for the prefix)."""
    info = _info(name)
    defaults = dict(info.defaults)
    if info.has_momentum:
        defaults.setdefault('momentum', 0.9)  # as create_optimizer_v2 (nesterov names need it)
    if info.lookahead:
        def factory(**kwargs):
            return jt.optim.lookahead(info.alias(**kwargs))
        factory.__signature__ = inspect.signature(info.alias)  # what inject_hyperparams binds against
        return factory, defaults
    return info.alias, defaults


def _injected_values(factory, defaults):
    """``{name: (value at step 1, 2, 3)}`` for the hyperparameters ``inject_hyperparams`` traces.

    The lr and (where the alias takes one) the weight decay change every step;
    momentum and eps, where the alias's value for this name is a number, keep
    it for two steps and change before the third.
    """
    params = inspect.signature(factory).parameters
    values = {'learning_rate': tuple(lr for lr, _ in STEP_LR_WD)}
    if 'weight_decay' in params:
        values['weight_decay'] = tuple(wd for _, wd in STEP_LR_WD)
    for name, scale in (('momentum', 0.5), ('eps', 10.0)):
        if name not in params:
            continue
        value = defaults.get(name, params[name].default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
            values[name] = (value, value, value * scale)
    return values


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
        res['chain'] = (chained.update(G1, chained.init(PARAMS), PARAMS, **extra),
                        tx.update(g_clip, s0, PARAMS, **extra))
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

    # ---- inject_hyperparams: lr, weight decay, momentum and eps are traced; everything else static
    def inject_check():
        values = _injected_values(factory, defaults)
        rest = {k: v for k, v in defaults.items() if k not in values}
        if 'momentum' in values and 'momentum_dtype' in inspect.signature(factory).parameters:
            # a traced float32 momentum and a Python float give (1 - momentum) an ulp apart; bfloat16 storage of the
            # momentum would round that to a 2**-8 difference, which is storage precision, not injection
            rest['momentum_dtype'] = 'float32'
        static = [n for n in inspect.signature(factory).parameters if n not in values]
        injected = optax.inject_hyperparams(factory, static_args=static)(
            **{k: v[0] for k, v in values.items()}, **rest)
        traces = []

        def step(g, s, p):
            traces.append(1)
            return injected.update(g, s, p, **extra)

        step = fast_jit(step)
        s, p = injected.init(PARAMS), PARAMS
        ref_s, ref_p = None, PARAMS
        for k, g in enumerate((G1, G2, G3)):
            if k:
                s = s._replace(hyperparams={**s.hyperparams, **{
                    name: jnp.asarray(v[k], jnp.float32) for name, v in values.items()}})
            u, s = step(g, s, p)
            ref_tx = factory(**{name: v[k] for name, v in values.items()}, **rest)
            ref_u, ref_s = fast_jit(lambda g, s, p: ref_tx.update(g, s, p, **extra))(
                g, ref_tx.init(PARAMS) if ref_s is None else ref_s, ref_p)
            if not _close(u, ref_u, p):
                return f'step {k + 1} ({", ".join(f"{n}={v[k]:g}" for n, v in values.items())}) differs from the alias'
            p, ref_p = optax.apply_updates(p, u), optax.apply_updates(ref_p, ref_u)
        if len(traces) != 1:
            return f'traced {len(traces)} times'
        return ''

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


# --------------------------------------------------------------------------------------------------------------------
# AdaHessian inside multi_transform, with hvp_fn_from_loss of the whole loss


def _leaf_loss(x):
    # sum(x) ** 2 couples a leaf's entries: the Hessian is not diagonal, so the probes drawn matter
    return jnp.sum(x ** 4) / 4 + jnp.sum(x) ** 2 + jnp.sum(jnp.sin(x))


def _separable_loss(params):
    return sum(_leaf_loss(x) for x in jax.tree.leaves(params))


HVP_PARAMS = {
    'a': jnp.linspace(-1.0, 1.0, 6).reshape(2, 3),
    'b': jnp.arange(4.0) + 0.5,
    'c': {'w': jnp.full((3,), 0.3), 'v': jnp.asarray([0.2, -0.7])},
    'd': {'x': jnp.asarray([1.5, -0.5]), 'y': jnp.asarray([[0.1, 0.4], [-0.2, 0.9]])},
}
# 'd' is labelled as a whole (a label-tree prefix): the AdaHessian partition sees one MaskedNode for the subtree
HVP_LABELS = {'a': 'hess', 'b': 'sgd', 'c': {'w': 'hess', 'v': 'sgd'}, 'd': 'sgd'}


def _hess_part(tree):
    return {'a': tree['a'], 'c': {'w': tree['c']['w']}}


def test_hvp_fn_from_loss_accepts_placeholders():
    """``optax.MaskedNode()`` or ``None`` in the probe (for a leaf or a whole subtree) is a zero tangent and comes back
    unchanged; the other leaves are ``H v`` with zeros at the placeholders."""
    hvp = jt.optim.hvp_fn_from_loss(_separable_loss, HVP_PARAMS)
    z = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), HVP_PARAMS)
    for hole in (optax.MaskedNode(), None):
        v = {'a': z['a'], 'b': hole, 'c': {'w': z['c']['w'], 'v': hole}, 'd': hole}
        full = {'a': z['a'], 'b': jnp.zeros(4), 'c': {'w': z['c']['w'], 'v': jnp.zeros(2)},
                'd': jax.tree.map(jnp.zeros_like, HVP_PARAMS['d'])}
        ref = jax.jvp(jax.grad(_separable_loss), (HVP_PARAMS,), (full,))[1]
        got = jax.jit(hvp)(v)
        is_hole = lambda x: x is None or isinstance(x, optax.MaskedNode)  # noqa: E731
        assert jax.tree.structure(got, is_leaf=is_hole) == jax.tree.structure(v, is_leaf=is_hole), (hole, got)
        assert type(got['b']) is type(hole) and type(got['d']) is type(hole), got
        for a, b in zip(jax.tree.leaves(_hess_part(got)), jax.tree.leaves(_hess_part(ref))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    # a probe without placeholders is the plain Hessian-vector product
    got = hvp(z)
    ref = jax.jvp(jax.grad(_separable_loss), (HVP_PARAMS,), (z,))[1]
    assert _equal(got, ref)


def test_adahessian_in_multi_transform_with_hvp_from_loss():
    """``multi_transform`` hands AdaHessian its partition with the other leaves as ``optax.MaskedNode()`` and passes
    ``hvp_fn`` through; ``hvp_fn_from_loss`` of the whole loss takes that probe. With a loss separable across leaves
    the partition's Hessian block is the Hessian of its own loss, and the probes are the same as for the partition
    alone (the state's key is split over the partition's leaves, in the same order), so three jitted steps equal
    AdaHessian run alone on those leaves with the hvp restricted to them, and SGD on the rest."""
    kw = dict(weight_decay=0.01, n_samples=2, update_each=2)
    tx = optax.multi_transform({'hess': jt.optim.adahessian(0.05, **kw), 'sgd': optax.sgd(0.1)}, HVP_LABELS)
    alone = jt.optim.adahessian(0.05, **kw)
    sgd = optax.sgd(0.1)

    def sgd_part(tree):
        return {'b': tree['b'], 'c': {'v': tree['c']['v']}, 'd': tree['d']}

    @jax.jit
    def step(p, s):
        g = jax.grad(_separable_loss)(p)
        u, s = tx.update(g, s, p, hvp_fn=jt.optim.hvp_fn_from_loss(_separable_loss, p))
        return optax.apply_updates(p, u), s

    @jax.jit
    def step_alone(q, s):
        g = jax.grad(_separable_loss)(q)
        u, s = alone.update(g, s, q, hvp_fn=jt.optim.hvp_fn_from_loss(_separable_loss, q))
        return optax.apply_updates(q, u), s

    @jax.jit
    def step_sgd(r, s):
        u, s = sgd.update(jax.grad(_separable_loss)(r), s, r)
        return optax.apply_updates(r, u), s

    p, s = HVP_PARAMS, tx.init(HVP_PARAMS)
    q, qs = _hess_part(HVP_PARAMS), alone.init(_hess_part(HVP_PARAMS))
    r, rs = sgd_part(HVP_PARAMS), sgd.init(sgd_part(HVP_PARAMS))
    for _ in range(3):
        p, s = step(p, s)
        q, qs = step_alone(q, qs)
        r, rs = step_sgd(r, rs)
    for got, ref in ((_hess_part(p), q), (sgd_part(p), r)):
        assert jax.tree.structure(got) == jax.tree.structure(ref)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(_hess_part(p)),
                                                                 jax.tree.leaves(_hess_part(HVP_PARAMS))))
    assert moved > 1e-3, 'vacuous: the AdaHessian leaves did not move'
