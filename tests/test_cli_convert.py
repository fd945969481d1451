"""``jaxopt-timm convert``: a timm train.py checkpoint continued in JAX from the orbax checkpoint it writes."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from _crossing import TimmRun, jax_steps
from jaxopt_timm.cli import main
from jaxopt_timm.parity import TOL, deviation, from_tree, make_arrays, to_tree

N, M = 5, 5


def _timm_checkpoint(tmp_path, opt='adamw', steps=N, **kwargs):
    import torch
    init, a, b, d = make_arrays(0)
    run = TimmRun(opt, init, (a, b, d), {'lr': 1e-2, 'weight_decay': 0.01, **kwargs})
    for t in range(steps):
        run.step(t)
    path = str(tmp_path / 'checkpoint-0.pth.tar')
    torch.save({'epoch': 0, 'arch': 'test', 'state_dict': run.module.state_dict(),
                'optimizer': run.opt.state_dict(), 'state_dict_ema': run.module.state_dict()}, path)
    names = tmp_path / 'names.json'
    names.write_text(json.dumps({n: n for n, _ in run.module.named_parameters()}))
    return run, path, str(names), init, (a, b, d)


@pytest.mark.parametrize('opt', ['adamw', 'lamb', 'momentum'])
def test_convert_then_continue_equals_timms_run(tmp_path, opt, capsys):
    import orbax.checkpoint as ocp
    run, path, names, init, coeffs = _timm_checkpoint(tmp_path, opt)
    out = str(tmp_path / 'converted')
    extra = ['--updates-per-epoch', str(N)] if opt == 'momentum' else []
    code = main(['convert', path, '--names', names, '--output', out, '--opt', opt, '--lr', '0.01',
                 '--weight-decay', '0.01', *extra])
    assert code == 0, capsys.readouterr().err
    assert f'step {N}' in capsys.readouterr().out

    params = to_tree({k: jnp.asarray(v) for k, v in init.items()})
    kwargs = dict(lr=1e-2, weight_decay=0.01)
    tx = jt.create_optimizer_v2(params, opt, **kwargs)
    target = {'params': params, 'opt_state': tx.init(params), 'step': jnp.zeros([], jnp.int32), 'ema': params}
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(out, jax.tree.map(ocp.utils.to_shape_dtype_struct, target))
    assert int(restored['step']) == N
    ours, _ = jax_steps(tx, restored['params'], restored['opt_state'], coeffs, N, M)
    for t in range(N, N + M):
        run.step(t)
    rel, _, disp = deviation(from_tree(ours), run.params(), init)
    assert disp > 1e-2 and rel <= TOL, (opt, rel)
    np.testing.assert_array_equal(np.asarray(restored['ema']['fc']['weight']),  # the checkpoint's EMA = its weights
                                  np.asarray(restored['params']['fc']['weight']))


def test_convert_refuses_bad_input(tmp_path, capsys):
    run, path, names, _, _ = _timm_checkpoint(tmp_path)
    out = str(tmp_path / 'converted')
    bad_names = tmp_path / 'bad.json'
    bad_names.write_text(json.dumps({'fc.weight': 'fc.weight'}))
    cases = [
        (['--names', str(bad_names), '--opt', 'adamw'], 'param groups of sizes'),  # too few names: groups differ
        (['--names', names, '--opt', 'lion'], "lacks 'exp_avg_sq'|has .'exp_avg_sq'|no place"),
        (['--names', names, '--opt', 'adamw', '--weight-decay', '0'], 'param groups of sizes'),
    ]
    for extra, message in cases:
        assert main(['convert', path, '--output', out, '--lr', '0.01', '--weight-decay', '0.01', *extra]) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and __import__('re').search(message, err), err
    not_timm = tmp_path / 'weights.pth'
    __import__('torch').save({'model': 1}, str(not_timm))
    assert main(['convert', str(not_timm), '--names', names, '--output', out]) == 2
    assert 'not a timm train.py checkpoint' in capsys.readouterr().err
    (tmp_path / 'exists').mkdir()
    assert main(['convert', path, '--names', names, '--output', str(tmp_path / 'exists')]) == 2
    assert 'exists' in capsys.readouterr().err
