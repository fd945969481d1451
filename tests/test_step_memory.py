"""The compiled update step's extra memory: full-size temporaries and copies XLA adds around donated state.

An optimizer step is memory-bound, and on XLA:CPU every full-size temporary is
a fresh buffer written and read again (and page-faulted) each step: SGD with L2
decay took 3.5x its no-decay time that way (measured on the 2-core CI CPU).
These tests compile the step (``update`` + ``apply_updates``, params and state
donated, :func:`jaxopt_timm.compiler_options`) on a two-leaf tree and read XLA's
own memory analysis: ``temp_size_in_bytes`` over the params' bytes. Nothing is
timed; speed itself is measured by ``python -m benchmarks.step``.

``TEMP_BOUND`` holds the names that still keep temporaries, with why; every
other name must compile to none. The bounds are upper bounds (a regression
guard), and ``test_bounds_are_tight`` fails when a name improves, so the table
follows the code.
"""
import jax
import jax.numpy as jnp
import optax
import pytest

import jaxopt_timm as jt
from _steps import update_extras

NAMES = list(jt.list_optimizers())
PARAMS = {'w': jnp.ones((512, 1024)), 'b': jnp.ones((1 << 20,))}  # a decayed matrix and an undecayed vector
N_BYTES = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(PARAMS))

# name -> (bound in units of the params' bytes, why). 'c' names: timm's caution mask needs the direction
# twice around a per-tensor mean, and XLA:CPU's reduction kernel stores it; shape-aware optimizers keep
# factored/preconditioned intermediates by design.
_NS = ('Newton-Schulz iterates, and its bfloat16 input materialized first (XLA:CPU rejects a bfloat16 dot '
       'that folds a transpose: the Flax-layout bug test_muon.py::test_flax_layout_bf16_jitted guards)')
_CAUTION = 'caution mask: the direction is stored for the per-tensor mean of the mask and the masked step'
_SF = ('Schedule-Free writes two params-sized outputs per leaf (the update and z) from one normalized gradient, '
       'which XLA:CPU stores for the second')
TEMP_BOUND = {
    'sfadamw': (2.0, _SF),
    'sfradam': (2.0, _SF),
    'sfsgd': (1.0, _SF),
    'soap': (2.17, 'the gradient and the step rotated into and out of the eigenbases of the preconditioner'),
    'shampoo': (4.0, 'blockwise preconditioned gradient, its graft direction and the layer-wise norm rescale'),
    'adadelta': (3.0, "optax's adadelta composition (rms of updates and of deltas, L2 shared by both)"),
    'adafactor': (0.67, 'factored second moment: the row/col statistics and the normalised update'),
    'adafactorbv': (0.33, 'factored second moment (big_vision)'),
    'adafactorbvc': (0.33, 'factored second moment (big_vision)'),
    'adahessian': (2.0, 'Hutchinson probes and the Hessian-vector product'),
    'adamp': (1.0, 'projection: cosine similarities need the direction before the projected step'),
    'adamuon': (0.75, _NS),
    'kron': (4.5, 'Kronecker-factored preconditioner products'),
    'kronc': (4.5, 'Kronecker-factored preconditioner products'),
    'kronw': (4.5, 'Kronecker-factored preconditioner products'),
    'lamb': (0.33, "decayed direction of an adapting leaf, stored for its norm and the trust-ratio step"),
    'lambc': (0.33, "decayed direction of an adapting leaf, stored for its norm and the trust-ratio step"),
    'lambcd': (0.33, "decayed direction of an adapting leaf, stored for its norm and the trust-ratio step"),
    'lambcw': (0.33, "decayed direction of an adapting leaf, stored for its norm and the trust-ratio step"),
    'lambw': (0.33, "decayed direction of an adapting leaf, stored for its norm and the trust-ratio step"),
    'mars': (0.33, "per-tensor norm of MARS' corrected gradient"),
    'muon': (0.75, _NS),
    'nadamuon': (0.75, _NS),
    'nmuon': (0.75, _NS),
    'rmsprop': (1.0, 'L2-decayed gradient shared by the square average and the step'),
    'sgdp': (1.0, 'projection: cosine similarities need the direction before the projected step'),
}
TEMP_BOUND.update({name: (bound, _CAUTION) for name, bound in {
    'cadafactor': 1.0, 'cadafactorbv': 0.67, 'cadafactorbvc': 0.67, 'cadamc': 2.0, 'cadamp': 3.0, 'cadamw': 2.0,
    'cadan': 1.0, 'cadanw': 1.0, 'cadopt': 2.0, 'cadoptc': 1.0, 'cadoptw': 1.0, 'clamb': 3.0, 'clambw': 3.0,
    'claprop': 1.0, 'clion': 1.0, 'clionc': 1.0, 'cmars': 1.0, 'cnadamc': 2.0, 'cnadamw': 2.0, 'crmsproptf': 2.0,
    'csgdc': 2.0, 'csgdp': 3.0, 'csgdw': 2.0,
}.items()})


def compiled_step(name, compiler_options):
    tx = jt.create_optimizer_v2(PARAMS, name, lr=1e-3, weight_decay=0.05)
    extra = update_extras(name)

    def step(p, s, g):
        updates, s = tx.update(g, s, p, **extra)
        return optax.apply_updates(p, updates), s

    state = jax.eval_shape(tx.init, PARAMS)
    return jax.jit(step, donate_argnums=(0, 1)).lower(PARAMS, state, PARAMS).compile(
        compiler_options=compiler_options or None)


def temp_ratio(name, compiler_options):
    return compiled_step(name, compiler_options).memory_analysis().temp_size_in_bytes / N_BYTES


@pytest.mark.parametrize('name', NAMES)
def test_no_full_size_temporaries(name):
    bound, why = TEMP_BOUND.get(name, (0.0, ''))
    ratio = temp_ratio(name, jt.compiler_options())
    assert ratio <= bound + 0.01, f'{name}: temporaries {ratio:.2f}x the params (bound {bound}: {why or "none"})'


@pytest.mark.parametrize('name', sorted(TEMP_BOUND))
def test_bounds_are_tight(name):
    bound, _ = TEMP_BOUND[name]
    ratio = temp_ratio(name, jt.compiler_options())
    assert ratio >= bound - 0.02, f'{name}: now {ratio:.2f}x, lower TEMP_BOUND from {bound}'


@pytest.mark.parametrize('name', ['lion', 'adabelief', 'adopt'])
def test_compiler_options_remove_state_copies(name):
    """Without the option XLA:CPU copies state the direction reads before it is overwritten in place."""
    def copies(opts):
        text = compiled_step(name, opts).as_text()
        entry = text[text.index('ENTRY'):]
        return sum(' copy(' in line and ('[512,1024]' in line or '[1048576]' in line) for line in entry.splitlines())

    assert copies({}) > 0, f'{name}: XLA no longer copies by default; the option may be unneeded'
    assert copies(jt.compiler_options()) == 0


def test_compiler_options_backends():
    assert jt.compiler_options('gpu') == {} and jt.compiler_options('tpu') == {}
    assert jt.compiler_options('cpu') == {'xla_cpu_copy_insertion_use_region_analysis': True}
