"""The state-dtype tests' cases and helpers, generated from the registry records (``OptimInfo.state_dtypes``).

A record's ``state_dtypes`` maps each state dtype option of its alias to the state fields it sets. The
tests in ``test_state_dtypes.py`` (sizes, default policy) and ``test_state_dtype_options.py`` (the
options) read it from here, so a new optimizer is covered by filling in its record.
"""
import inspect

import jax
import jax.numpy as jnp

import jaxopt_timm as jt
from _fast_jit import fast_jit
from _steps import update_extras

BF16, F16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16), jnp.dtype(jnp.float32)

# PyTorch layouts: 'fc.weight' is factored by Adafactor (both dims > 16) and orthogonalised by Muon; 'conv.weight'
# is a Muon kernel and unfactored for Adafactor; biases and the 1-element scale take Muon's AdamW fallback.
SHAPES = {'conv': {'weight': (8, 4, 3, 3), 'bias': (8,)}, 'fc': {'weight': (20, 18), 'bias': (20,)}, 'scale': (1,)}

# Every registered name, and lookahead around optimizers of each kind of state.
NAMES = list(jt.list_optimizers()) + ['lookahead_adamw', 'lookahead_lamb', 'lookahead_madgrad']

# Alias arguments ending in ``_dtype`` that are not state dtypes (so need no ``state_dtypes`` entry).
NOT_STATE_DTYPES = {'ns_dtype'}  # Muon's Newton-Schulz compute dtype

# Arguments a case adds so that every buffer a record lists exists in the state (beyond each name's defaults):
# Adafactor has a first moment only with betas; cmars with optimize_1d runs its 1-D params through MARS, not
# the AdamW fallback. ``amsgrad=True`` is added generically (a second case) wherever the alias takes it.
EXTRA_KWARGS = {'adafactor': dict(betas=(0.9, 0.999)), 'cmars': dict(optimize_1d=True)}


def info(name):
    return jt.get_optimizer_info(name)


def option_cases():
    """``(name, extra kwargs)`` for every registered name whose record has ``state_dtypes`` (+ amsgrad)."""
    cases = []
    for name in jt.list_optimizers():
        rec = info(name)
        if not rec.state_dtypes:
            continue
        kw = EXTRA_KWARGS.get(name, {})
        cases.append((name, kw))
        if rec.accepts('amsgrad') and not rec.defaults.get('amsgrad'):
            cases.append((name, {**kw, 'amsgrad': True}))
    return cases


def case_id(name, kw):
    """The name, and the arguments the case adds beyond the name's :data:`EXTRA_KWARGS` (``adamw-amsgrad``)."""
    return '-'.join([name] + [k for k in kw if k not in EXTRA_KWARGS.get(name, {})])


def option_default(name, option):
    """The alias's own default for ``option`` (None: the state follows the params' dtype)."""
    default = inspect.signature(info(name).alias).parameters[option].default
    return None if default is None else jnp.dtype(default)


def default_field_dtypes(name, params_dtype):
    """``field -> dtype`` the record's fields have with no option given: the option's own default if it has
    one (adafactorbv's bfloat16 momentum), else the policy: the params' dtype, float32 for float16 params.
    Documented exceptions, as timm's: Adafactor keeps float32 statistics and AdaBelief float32 moments
    whatever the params (their docstrings: "at least float32"); NovoGrad's per-leaf norm scalars (its second
    moment) are float32 by default."""
    rec, out = info(name), {}
    for option, fields in rec.state_dtypes.items():
        want = option_default(name, option)
        if want is None:
            want = F32 if params_dtype == F16 else jnp.dtype(params_dtype)
            alias = rec.alias.__name__
            if alias in ('adafactor', 'adabelief') or (alias == 'novograd' and option == 'nu_dtype'):
                want = F32
        out.update({f: want for f in fields})
    return out


def tree(dtype, scale=1.0, offset=1.0, seed=0, shapes=SHAPES):
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(
        treedef, [(offset + scale * jax.random.normal(k, s)).astype(dtype) for k, s in zip(keys, leaves)])


def grads_seq(dtype, scale, steps=5):
    return [tree(dtype, scale=scale, offset=0.0, seed=t + 1) for t in range(steps)]


def build(name, params, **opts):
    return jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01, **opts)


def buffers(state):
    """``field name -> [leaves]`` for every array in the state, keyed by the innermost NamedTuple field holding it."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        fields = [k.name for k in path if isinstance(k, jax.tree_util.GetAttrKey)]
        out.setdefault(fields[-1] if fields else None, []).append(leaf)
    return out


def assert_fields(state, want, context):
    """Each field of ``want`` (``field -> dtype``) that the state holds has that dtype in every floating leaf."""
    for field, leaves in buffers(state).items():
        if field in want:
            floating = [x for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
            assert floating, (context, field)
            for x in floating:
                assert x.dtype == jnp.dtype(want[field]), (context, field, x.dtype, want[field])


def run(name, params, grads_list, **opts):
    """Jitted steps from ``params`` on a fixed gradient sequence: (updates per step, final state)."""
    tx = build(name, params, **opts)
    extra = update_extras(name)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params, **extra)
        params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)
        return params, state, updates

    step = fast_jit(step)
    state = tx.init(params)
    history = []
    for grads in grads_list:
        params, state, updates = step(params, state, grads)
        history.append(updates)
    return history, state


def assert_updates(history, params, dtype, context):
    for t, updates in enumerate(history):
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            assert u.dtype == dtype and u.shape == p.shape, (context, t, u.dtype, u.shape)
            assert bool(jnp.all(jnp.isfinite(u))), (context, t)
