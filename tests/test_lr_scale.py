"""Per-group lr scale (layer decay) under a schedule against timm/torch classes given param groups with ``lr_scale``.

timm applies ``lr_scale`` only through its schedulers, so the torch loop sets each group's lr to
``lr_scale * schedule(t)`` before every step; ours gets the same schedule and an ``lr_scale`` tree. The group lr
enters the corrected decay (Lion, LaProp, ADOPT, NvNovoGrad, RMSpropTF, SGDW, NAdamW), MADGRAD's dual-averaging
weights, RMSpropTF's momentum buffer, Adagrad's lr decay and RMSprop's momentum.
"""
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import run_parity, to_tree
from parity import linear_decay, timm_optim as _timm

REFERENCE = {  # our alias -> the reference class
    'lion': lambda: _timm().Lion, 'laprop': lambda: _timm().LaProp, 'adopt': lambda: _timm().Adopt,
    'mars': lambda: _timm().Mars, 'adan': lambda: _timm().Adan, 'madgrad': lambda: _timm().MADGRAD,
    'novograd': lambda: _timm().NvNovoGrad, 'rmsprop_tf': lambda: _timm().RMSpropTF, 'sgdw': lambda: _timm().SGDW,
    'nadamw': lambda: _timm().NAdamW, 'adagrad': lambda: torch.optim.Adagrad, 'rmsprop': lambda: torch.optim.RMSprop,
}


def _lr_scale(name):
    return 0.3 if name.startswith(('conv', 'pos_embed')) else 1.0


@pytest.mark.parametrize('which,peak,kwargs', [
    ('lion', 0.02, dict(weight_decay=1.0, corrected_weight_decay=True, caution=True)),
    ('laprop', 0.02, dict(weight_decay=0.5, corrected_weight_decay=True)),
    ('adopt', 0.02, dict(weight_decay=0.5, decoupled=True, corrected_weight_decay=True)),
    ('mars', 0.02, dict(weight_decay=0.1, lr_1d_factor=0.5)),
    ('adan', 0.02, dict(weight_decay=0.5)),
    ('madgrad', 0.02, dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True)),
    ('madgrad', 0.02, dict(momentum=0.0, weight_decay=0.1)),
    ('novograd', 0.02, dict(weight_decay=0.1, decoupled_decay=True, corrected_weight_decay=True)),
    ('rmsprop_tf', 0.02, dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True, corrected_weight_decay=True)),
    ('rmsprop_tf', 0.02, dict(momentum=0.9, lr_in_momentum=False, caution=True, weight_decay=0.05)),
    ('sgdw', 0.01, dict(momentum=0.9, nesterov=True, caution=True, weight_decay=0.3, corrected_weight_decay=True)),
    ('nadamw', 0.01, dict(weight_decay=0.3, caution=True, corrected_weight_decay=True, clipping_threshold=0.5)),
    ('adagrad', 0.01, dict(lr_decay=0.05, weight_decay=0.1)),
    ('rmsprop', 0.01, dict(momentum=0.9, centered=True, alpha=0.9, weight_decay=0.1)),
])
def test_lr_scale_groups_with_schedule(which, peak, kwargs):
    timm_cls = REFERENCE[which]()
    our_alias = getattr(jt.optim, which)
    steps = 30
    sched = linear_decay(peak, steps)  # casts the step count to float32 itself

    def make_timm(module):
        groups = {}
        for name, p in module.named_parameters():
            groups.setdefault(_lr_scale(name), []).append(p)
        return timm_cls([dict(params=ps, lr_scale=s) for s, ps in groups.items()], lr=peak, **kwargs)

    def make_ours(params):
        names = dict(jt.optim.named_leaves(params))
        scale = to_tree({n: _lr_scale(n) for n in names})
        extra = {'max_lr': peak} if kwargs.get('corrected_weight_decay') else {}
        return our_alias(sched, lr_scale=scale, **kwargs, **extra)

    run_parity(make_timm, make_ours, steps=steps, torch_lr=lambda t: float(sched(t))).check()
