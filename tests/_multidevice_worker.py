"""Multi-device properties of every registered optimizer, run on 8 simulated CPU devices.

Run by ``tests/test_multidevice.py`` in its own process (the device count is
fixed when jax starts, and the rest of the suite keeps one device):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/_multidevice_worker.py [mode ...]

Modes: ``pmap`` (data parallelism, gradients ``pmean``-ed over the axis),
``sharded`` (``jit`` over a ``Mesh`` with ``NamedSharding``: params and state
FSDP-sharded, largest divisible dim over the devices, and, in the same
program, a fully replicated copy; the batch is split over the devices) and ``abstract``
(state built by ``jax.eval_shape(tx.init)``, sharded, then materialised by a
``jit`` with those ``out_shardings``). Every name is compared with the same
optimizer run by ``jit`` on one device for ``STEPS`` updates, its gradient
the mean of the per-shard gradients (what data parallelism computes): per leaf ``max|ours - ref| <= RTOL * max|ref|``.

Optimizers are stepped ``GROUP`` at a time by one program (compilation, not
running, is the cost on CPU); a group whose program fails is rerun name by name.
One line per (name, property) is printed as ``RESULT {json}`` so the test can
check the failing set against its table of known issues exactly.
"""
import json
import os
import sys
import time
import traceback
import warnings

_flags = os.environ.get('XLA_FLAGS', '')
if 'xla_force_host_platform_device_count' not in _flags:
    _flags += ' --xla_force_host_platform_device_count=8'
# compilation dominates on CPU; the reference runs in this process under the same flags
_flags += (' --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
           ' --xla_cpu_use_fusion_emitters=false')
os.environ['XLA_FLAGS'] = _flags.strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

jax.config.update('jax_numpy_dtype_promotion', 'strict')
warnings.simplefilter('error')

import jaxopt_timm as jt  # noqa: E402

NDEV = 8
STEPS = 10
RTOL = 1e-6
# FSDP-sharded params: a per-tensor reduction (norm, mean, factored row/col statistic) is summed per shard and
# then across devices, a different order from one device, so results differ by float32 reassociation (a few
# ulps per reduction, amplified by norm-based steps over 10 steps: ~1e-6 measured for cautious Lamb). 1e-5 keeps
# ~10x headroom over that and stays far below what a wrong layout or a missed gather gives (O(1)).
RTOL_FSDP = 1e-5
BATCH = 16
GROUP = 12
EXTRA_NAMES = ('lookahead_adamw',)


def names():
    return list(jt.list_optimizers()) + list(EXTRA_NAMES)


def make_params():
    """A small mixed tree in PyTorch layouts; most leaves have a dim divisible by the device count."""
    shapes = {
        'conv': {'weight': (24, 24, 3, 3)},  # adafactor factors dims (0, 1); FSDP splits dim 0
        'fc': {'weight': (32, 24), 'bias': (32,)},  # a matrix for muon / kron / factored adafactor
        'head': {'weight': (5, 32)},  # the largest dim divisible, the other not
        'scale': (1,),  # one element: replicated
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    vals = [1.0 + 0.5 * jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, vals)


def make_batch():
    return jax.random.normal(jax.random.PRNGKey(1), (BATCH, 8), jnp.float32)


def loss_fn(params, batch):
    """Mean over the batch of ``sum((p a - c)^2) + 0.05 sum(p^4)`` per leaf, ``a, c`` two batch features.

    Convex, non-quadratic, params- and batch-dependent; its Hessian is bounded
    away from 0 (AdaHessian divides by it: a near-singular one turns rounding
    into 1e-4 differences). Written with batch moments, so it stays cheap to compile.
    """
    total = jnp.zeros([], jnp.float32)
    for i, p in enumerate(jax.tree.leaves(params)):
        a, c = batch[:, i % 8], 0.3 * batch[:, (i + 3) % 8]
        aa, ac, cc = jnp.mean(a * a), jnp.mean(a * c), jnp.mean(c * c)
        total = total + jnp.sum(p * p * aa - 2.0 * p * ac + cc + 0.05 * p ** 4) / np.sqrt(p.size)
    return total


def build(name, params):
    return jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01)


def record(name):
    return jt.get_optimizer_info(name)


def make_step(tx, info, grad_fn):
    """``grad_fn(params, batch) -> (grads, hvp_fn, grads_at)``; one full update (``info``: the record, for the
    extra arguments: AdaHessian's ``hvp_fn``, SAM's ``grad_fn``)."""

    def step(params, state, batch):
        grads, hvp, grads_at = grad_fn(params, batch)
        extra = {'hvp_fn': hvp} if info.second_order else {'grad_fn': grads_at} if info.grad_fn else {}
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    return step


def exact(tree):
    """Each value rounded to a multiple of 2**-16 (after a no-op clip to |x| < 16).

    A sum of NDEV such values is exact in float32 whatever the order, so the
    mean of per-shard gradients is bit-identical whether ``pmean``, GSPMD's
    all-reduce or a single-device ``mean`` computes it; what remains to
    compare is the optimizer itself, not the reduction order (which
    ill-conditioned updates, AdaHessian's or bf16 Newton-Schulz's, amplify
    from 1 ulp to 1e-5).
    """
    return jax.tree.map(lambda x: jnp.round(jnp.clip(x, -15.0, 15.0) * 65536.0) / 65536.0, tree)


def shard_mean(fn):
    """Data parallelism on one program: ``exact(fn)`` on each of NDEV batch shards, averaged."""

    def wrapped(*args):
        *rest, batch = args
        shards = batch.reshape((NDEV, -1) + batch.shape[1:])
        out = jax.vmap(lambda b: exact(fn(*rest, b)))(shards)
        return jax.tree.map(lambda x: jnp.mean(x, axis=0), out)

    return wrapped


def dp_grads(params, batch):
    grads = shard_mean(jax.grad(loss_fn))(params, batch)

    def hvp(v):
        return shard_mean(lambda p, b: jt.optim.hvp_fn_from_loss(loss_fn, p, b)(v))(params, batch)

    return grads, hvp, lambda p: shard_mean(jax.grad(loss_fn))(p, batch)


def pmap_grads(params, batch):
    grads = jax.lax.pmean(exact(jax.grad(loss_fn)(params, batch)), 'batch')
    local_hvp = jt.optim.hvp_fn_from_loss(loss_fn, params, batch)
    # SAM's second gradient gets the same pmean as the first (the documented pmap composition)
    return (grads, (lambda v: jax.lax.pmean(exact(local_hvp(v)), 'batch')),
            lambda p: jax.lax.pmean(exact(jax.grad(loss_fn)(p, batch)), 'batch'))


def group_step(txs, names_, grad_fn):
    steps = [make_step(tx, record(n), grad_fn) for tx, n in zip(txs, names_)]

    def step(ps, ss, batch):
        out = [s(p, st, batch) for s, p, st in zip(steps, ps, ss)]
        return [o[0] for o in out], [o[1] for o in out]

    return step


def rel_err(ours, ref):
    """Largest per-leaf ``max|ours - ref| / max|ref|``."""
    return max(leaf_errs(ours, ref).values())


def leaf_errs(ours, ref):
    out = {}
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(ours)[0], jax.tree.leaves(ref)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        err = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) if np.all(np.isfinite(a)) else float('inf')
        out[jax.tree_util.keystr(path)] = err
    return out


def worst_leaf(ours, ref):
    errs = leaf_errs(ours, ref)
    return max(errs, key=errs.get)


# ---- single-device reference ---------------------------------------------------------------------------

_REF = {}


def references(group):
    todo = [n for n in group if n not in _REF]
    if todo:
        params, batch = make_params(), make_batch()
        txs = [build(n, params) for n in todo]
        step = jax.jit(group_step(txs, todo, dp_grads))
        inits = [tx.init(params) for tx in txs]
        ps, ss = [params] * len(todo), inits
        for _ in range(STEPS):
            ps, ss = step(ps, ss, batch)
        for n, p, s, s0 in zip(todo, ps, ss, inits):
            _REF[n] = (jax.device_get(p), jax.device_get(s0))
    return [_REF[n] for n in group]


# ---- pmap ------------------------------------------------------------------------------------------------

def run_pmap(group):
    params, batch = make_params(), make_batch()
    txs = [build(n, params) for n in group]
    step = jax.pmap(group_step(txs, group, pmap_grads), axis_name='batch')
    rep = jax.tree.map(lambda x: jnp.broadcast_to(x, (NDEV,) + x.shape), params)
    ps = [rep] * len(group)
    ss = [jax.tree.map(lambda x: jnp.broadcast_to(x, (NDEV,) + x.shape), tx.init(params)) for tx in txs]
    shards = batch.reshape(NDEV, BATCH // NDEV, -1)
    for _ in range(STEPS):
        ps, ss = step(ps, ss, shards)
    results = []
    for p, (ref, _) in zip(ps, references(group)):
        spread = max(float(jnp.max(jnp.abs(x - x[:1]))) for x in jax.tree.leaves(p))
        err = rel_err(jax.tree.map(lambda x: x[0], p), ref)
        results.append((err <= RTOL and spread == 0.0, {'rel_err': err, 'replica_spread': spread}))
    return results


# ---- jit over a mesh -------------------------------------------------------------------------------------

def fsdp_spec(shape):
    """FSDP-style: the largest dim divisible by the device count is split over the mesh, else replicated."""
    best = None
    for i, d in enumerate(shape):
        if d % NDEV == 0 and (best is None or d > shape[best]):
            best = i
    if best is None:
        return P()
    return P(*([None] * best + ['fsdp']))


def _path_key(path):
    return tuple(str(k) for k in path)


def match_param(path, shape, params):
    """Index of the param a state leaf belongs to elementwise (same key-path suffix, same shape), or None."""
    key = _path_key(path)
    for i, (ppath, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
        pk = _path_key(ppath)
        if key[len(key) - len(pk):] == pk and tuple(shape) == tuple(leaf.shape):
            return i
    return None


def state_shardings(abstract_state, params, param_sh, mesh):
    """Every state leaf's sharding: its param's for elementwise state, else the FSDP rule on its own shape.

    Returns the shardings tree and, per leaf, ``(is_elementwise, path)``.
    """
    psh = jax.tree.leaves(param_sh)
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract_state)
    out, kinds = [], []
    for path, leaf in flat:
        i = match_param(path, leaf.shape, params)
        out.append(psh[i] if i is not None else NamedSharding(mesh, fsdp_spec(leaf.shape)))
        kinds.append((i is not None, jax.tree_util.keystr(path)))
    return jax.tree.unflatten(treedef, out), kinds


def _mesh():
    return Mesh(np.array(jax.devices()[:NDEV]), ('fsdp',))


def check_abstract_init(state, abstract, st_sh, plain):
    """The state materialised from ``eval_shape`` shardings is laid out as asked and equals a plain init."""
    problems = []
    if jax.tree.structure(state) != jax.tree.structure(abstract):
        problems.append('structure differs from eval_shape')
    for got, ab, want in zip(jax.tree.leaves(state), jax.tree.leaves(abstract), jax.tree.leaves(st_sh)):
        if got.shape != ab.shape or got.dtype != ab.dtype:
            problems.append(f'{got.shape}/{got.dtype} vs abstract {ab.shape}/{ab.dtype}')
        if not got.sharding.is_equivalent_to(want, got.ndim):
            problems.append(f'sharded {got.sharding.spec}, asked {want.spec}')
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(plain)):
        if not np.array_equal(np.asarray(got), np.asarray(want)):
            problems.append('values differ from tx.init on one device')
            break
    return not problems, {'problems': problems[:4],
                          'sharded_state_leaves': sum(1 for s in jax.tree.leaves(st_sh) if s.spec != P())}


def run_mesh(group):
    """FSDP-sharded and replicated copies of every optimizer in the group, stepped by one jitted program.

    The FSDP state is built abstractly (``jax.eval_shape(tx.init)``), given
    shardings (its param's for elementwise state, the FSDP rule otherwise) and
    materialised by ``jit(tx.init, out_shardings=...)``: property ``abstract``.
    No shardings are given to the step: GSPMD propagates them, and property
    ``sharded`` asserts the single-device result and that params and
    elementwise state come out laid out as they went in.
    """
    mesh = _mesh()
    params, batch = make_params(), make_batch()
    txs = [build(n, params) for n in group]
    refs = references(group)
    fsdp_p = jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape)), params)
    repl_p = jax.tree.map(lambda x: NamedSharding(mesh, P()), params)
    shardings, kinds, ps, ss, abstract_results = [], [], [], [], []
    abstracts = jax.eval_shape(lambda p: [tx.init(p) for tx in txs], params)
    fsdp_ss = [state_shardings(a, params, fsdp_p, mesh) for a in abstracts]
    p = jax.device_put(params, fsdp_p)
    inits = jax.jit(lambda p: [tx.init(p) for tx in txs], out_shardings=[s for s, _ in fsdp_ss])(p)
    for abstract, (fsdp_s, kind), s, (_, plain) in zip(abstracts, fsdp_ss, inits, refs):
        abstract_results.append(check_abstract_init(s, abstract, fsdp_s, plain))
        repl_s = jax.tree.map(lambda _: NamedSharding(mesh, P()), abstract)
        ps += [p, jax.device_put(params, repl_p)]
        ss += [s, jax.device_put(plain, repl_s)]
        shardings += [(fsdp_p, fsdp_s), (repl_p, repl_s)]
        kinds.append(kind)
    batch = jax.device_put(batch, NamedSharding(mesh, P('fsdp')))
    step = jax.jit(group_step([t for t in txs for _ in (0, 1)], [n for n in group for _ in (0, 1)], dp_grads))
    for _ in range(STEPS):
        ps, ss = step(ps, ss, batch)
    results = []
    for j, (ref, _) in enumerate(refs):
        info, ok = {}, True
        for layout, k in (('fsdp', 2 * j), ('replicated', 2 * j + 1)):
            p_sh, s_sh = shardings[k]
            err = rel_err(ps[k], ref)
            problems, moved = [], []
            for got, want in zip(jax.tree.leaves(ps[k]), jax.tree.leaves(p_sh)):
                if not got.sharding.is_equivalent_to(want, got.ndim):
                    problems.append(f'param sharded {got.sharding.spec}, expected {want.spec}')
            for got, want, (elementwise, path) in zip(jax.tree.leaves(ss[k]), jax.tree.leaves(s_sh), kinds[j]):
                if got.sharding.is_equivalent_to(want, got.ndim):
                    continue
                if elementwise or layout == 'replicated':
                    problems.append(f'state {path} sharded {got.sharding.spec}, expected {want.spec}')
                else:
                    moved.append(f'{path}: {want.spec} -> {got.sharding.spec}')
            ok = ok and err <= (RTOL_FSDP if layout == 'fsdp' else RTOL) and not problems
            info[layout] = {'rel_err': err, 'worst_leaf': worst_leaf(ps[k], ref), 'problems': problems[:4],
                            'other_state_resharded': moved[:6]}
        info['elementwise_state_leaves'] = sum(e for e, _ in kinds[j])
        results.append({'sharded': (ok, info), 'abstract': abstract_results[j]})
    return results


MODES = {'pmap': lambda g: [{'pmap': r} for r in run_pmap(g)], 'sharded': run_mesh}
PROPERTIES = {'pmap': ('pmap',), 'sharded': ('sharded', 'abstract')}


def _error(e):
    msg = str(e).strip().splitlines()
    return f'{type(e).__name__}: {msg[0] if msg else ""}'[:400]


def run_group(mode, group):
    """Per name ``{property: (ok, info, error)}``; when the grouped program fails, each name runs alone."""
    try:
        return [{prop: (ok, info, '') for prop, (ok, info) in r.items()} for r in MODES[mode](group)]
    except Exception as e:  # noqa: BLE001
        if len(group) == 1:
            if os.environ.get('MULTIDEVICE_TRACEBACK'):
                traceback.print_exc()
            return [{prop: (False, {}, _error(e)) for prop in PROPERTIES[mode]}]
        return [r for n in group for r in run_group(mode, [n])]


def report(prop, name, ok, err, info=None, secs=None):
    rec = {'property': prop, 'name': name, 'ok': bool(ok), 'error': err, 'secs': secs}
    rec.update(info or {})
    print('RESULT ' + json.dumps(rec), flush=True)


def main(argv):
    modes = argv or list(MODES)
    assert len(jax.devices()) == NDEV, jax.devices()
    only = os.environ.get('MULTIDEVICE_NAMES')
    todo = only.split(',') if only else names()
    # a name that cannot even be traced on one device is reported alone and never poisons a group
    ok_names = []
    for name in todo:
        try:
            params = make_params()
            tx = build(name, params)
            jax.eval_shape(make_step(tx, record(name), dp_grads), params, tx.init(params), make_batch())
            ok_names.append(name)
        except Exception as e:  # noqa: BLE001
            for mode in modes:
                for prop in PROPERTIES[mode]:
                    report(prop, name, False, 'single-device step: ' + _error(e))
    groups = [ok_names[i:i + GROUP] for i in range(0, len(ok_names), GROUP)]
    for mode in modes:
        t0, c0 = time.time(), time.process_time()
        for group in groups:
            t = time.time()
            results = run_group(mode, group)
            secs = round((time.time() - t) / len(group), 2)
            for name, r in zip(group, results):
                for prop, (ok, info, err) in r.items():
                    report(prop, name, ok, err, info, secs)
        print(f'MODE {mode} done in {time.time() - t0:.1f}s wall, {time.process_time() - c0:.1f}s cpu', flush=True)
    print('DONE', flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
