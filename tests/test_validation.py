"""Every optimizer refuses an invalid hyperparameter at construction with a ``ValueError`` naming it.

One table, ``CASES``: the builder (one of our aliases or transforms, or a registry name given to
``create_optimizer_v2``), its keyword arguments, and the regex the error message must contain (the argument's
name, or ``max_lr`` where corrected decay cannot find a peak lr). The accepted ranges follow the timm/torch
constructors (most of which raise on the same values); here only our error is checked. Checks that cannot be a
row (a schedule that is accepted beside one that is not) are tests of their own below. Factory-level input
checks (empty trees, ``param_group_fn`` overrides) are in ``test_factory_validation.py``; registry-wide lr /
betas / eps / momentum / weight decay checks in ``test_factory.py``.
"""
import jax.numpy as jnp
import pytest

import jaxopt_timm as jt
from jaxopt_timm.transforms import scale_by_trust_ratio

PARAMS = {'w': jnp.ones((2, 2))}

# checked on each of ADAM_FAMILY_ALIASES
ADAM_FAMILY_ALIASES = (
    jt.optim.adabelief, jt.optim.radam, jt.optim.radam_legacy, jt.optim.nadam, jt.optim.nadam_legacy)
ADAM_FAMILY_COMMON = [
    (dict(learning_rate=-1e-3), 'learning_rate'),
    (dict(betas=(1.0, 0.999)), 'betas'),
    (dict(betas=(0.9, -0.1)), 'betas'),
    (dict(betas=(0.9,)), 'betas'),
    (dict(eps=-1e-8), 'eps'),
    (dict(weight_decay=-0.1), 'weight_decay'),
]

CASES = [(alias, kwargs, match) for alias in ADAM_FAMILY_ALIASES for kwargs, match in ADAM_FAMILY_COMMON] + [
    # --- AdaBelief, RAdam, NAdam (torch and legacy): their own switches (shared checks: ADAM_FAMILY_COMMON)
    (jt.optim.adabelief, dict(amsgrad=1), 'amsgrad'),
    (jt.optim.adabelief, dict(decoupled_decay='yes'), 'decoupled_decay'),
    (jt.optim.adabelief, dict(fixed_decay=None), 'fixed_decay'),
    (jt.optim.adabelief, dict(rectify=0), 'rectify'),
    (jt.optim.adabelief, dict(degenerated_to_sgd='no'), 'degenerated_to_sgd'),
    (jt.optim.radam, dict(decoupled_weight_decay=1), 'decoupled_weight_decay'),
    (jt.optim.radam, dict(maximize='no'), 'maximize'),
    (jt.optim.nadam, dict(momentum_decay=-4e-3), 'momentum_decay'),
    (jt.optim.nadam, dict(decoupled_weight_decay=1), 'decoupled_weight_decay'),
    (jt.optim.nadam_legacy, dict(schedule_decay=-1.0), 'schedule_decay'),
    (jt.optim.adabelief, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
    # --- Lion, LaProp, ADOPT, MARS, Adan
    (jt.optim.lion, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.lion, dict(betas=(1.0, 0.99)), 'betas'),
    (jt.optim.lion, dict(betas=(0.9,)), 'betas'),
    (jt.optim.lion, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.lion, dict(caution=1), 'caution'),
    (jt.optim.lion, dict(maximize='no'), 'maximize'),
    (jt.optim.lion, dict(learning_rate=lambda t: 0.1, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.laprop, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.laprop, dict(betas=(0.9, 1.0)), 'betas'),
    (jt.optim.laprop, dict(eps=-1.0), 'eps'),
    (jt.optim.laprop, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
    (jt.optim.laprop, dict(corrected_weight_decay=None), 'corrected_weight_decay'),
    (jt.optim.laprop, dict(learning_rate=0.0, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.adopt, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adopt, dict(betas=(-0.1, 0.9999)), 'betas'),
    (jt.optim.adopt, dict(eps=-1e-6), 'eps'),
    (jt.optim.adopt, dict(clip_exp='x'), 'clip_exp'),
    (jt.optim.adopt, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adopt, dict(decoupled=0), 'decoupled'),
    (jt.optim.adopt, dict(learning_rate=lambda t: 0.1, decoupled=True, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.mars, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.mars, dict(betas=(0.9, 1.5)), 'betas'),
    (jt.optim.mars, dict(eps=-1.0), 'eps'),
    (jt.optim.mars, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.mars, dict(mars_type='sgd'), 'mars_type'),
    (jt.optim.mars, dict(lr_1d_factor=-1.0), 'lr_1d_factor'),
    (jt.optim.mars, dict(betas_1d=(0.9, 1.0)), 'betas_1d'),
    (jt.optim.mars, dict(gamma=float('nan')), 'gamma'),
    (jt.optim.mars, dict(optimize_1d='yes'), 'optimize_1d'),
    (jt.optim.adan, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adan, dict(betas=(0.98, 0.92)), 'betas'),
    (jt.optim.adan, dict(betas=(0.98, 0.92, 1.0)), 'betas'),
    (jt.optim.adan, dict(eps=-1.0), 'eps'),
    (jt.optim.adan, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adan, dict(no_prox=1), 'no_prox'),
    # --- MADGRAD, NvNovoGrad, RMSpropTF
    (jt.optim.madgrad, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.madgrad, dict(learning_rate=0.0), 'learning_rate'),  # timm requires lr > 0
    (jt.optim.madgrad, dict(momentum=1.0), 'momentum'),
    (jt.optim.madgrad, dict(momentum=-0.1), 'momentum'),
    (jt.optim.madgrad, dict(eps=-1e-6), 'eps'),
    (jt.optim.madgrad, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.madgrad, dict(decoupled_decay=1), 'decoupled_decay'),
    (jt.optim.novograd, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.novograd, dict(betas=(1.0, 0.98)), 'betas'),
    (jt.optim.novograd, dict(betas=(0.9, -0.1)), 'betas'),
    (jt.optim.novograd, dict(betas=(0.9,)), 'betas'),
    (jt.optim.novograd, dict(eps=-1.0), 'eps'),
    (jt.optim.novograd, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.novograd, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
    (jt.optim.novograd, dict(grad_averaging='yes'), 'grad_averaging'),
    (jt.optim.novograd, dict(amsgrad=None), 'amsgrad'),
    (jt.optim.novograd, dict(learning_rate=lambda t: 0.1, decoupled_decay=True, corrected_weight_decay=True),
     'max_lr'),
    (jt.optim.rmsprop_tf, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.rmsprop_tf, dict(alpha=-0.1), 'alpha'),
    (jt.optim.rmsprop_tf, dict(alpha=1.5), 'alpha'),
    (jt.optim.rmsprop_tf, dict(eps=-1e-10), 'eps'),
    (jt.optim.rmsprop_tf, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.rmsprop_tf, dict(momentum=-0.9), 'momentum'),
    (jt.optim.rmsprop_tf, dict(momentum=1.5), 'momentum'),  # timm accepts it; the buffer grows like 1.5**t
    (jt.optim.rmsprop_tf, dict(centered=0), 'centered'),
    (jt.optim.rmsprop_tf, dict(lr_in_momentum='tf'), 'lr_in_momentum'),
    (jt.optim.rmsprop_tf, dict(caution=1), 'caution'),
    (jt.optim.rmsprop_tf, dict(learning_rate=0.0, decoupled_decay=True, corrected_weight_decay=True), 'max_lr'),
    # --- torch.optim Adam/Adamax/Adadelta/Adagrad/RMSprop, SGDW, NAdamW, AdamWLegacy
    (jt.optim.adam, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adam, dict(betas=(1.0, 0.999)), 'betas'),
    (jt.optim.adam, dict(eps=-1.0), 'eps'),
    (jt.optim.adam, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adam, dict(amsgrad='yes'), 'amsgrad'),
    (jt.optim.adam, dict(decoupled_weight_decay=1), 'decoupled_weight_decay'),
    (jt.optim.adamax, dict(betas=(0.9, 1.0)), 'betas'),
    (jt.optim.adamax, dict(eps=-1.0), 'eps'),
    (jt.optim.adadelta, dict(rho=1.5), 'rho'),
    (jt.optim.adadelta, dict(rho=-0.1), 'rho'),
    (jt.optim.adadelta, dict(eps=-1e-6), 'eps'),
    (jt.optim.adagrad, dict(lr_decay=-0.1), 'lr_decay'),
    (jt.optim.adagrad, dict(initial_accumulator_value=-1.0), 'initial_accumulator_value'),
    (jt.optim.adagrad, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
    (jt.optim.rmsprop, dict(alpha=-0.1), 'alpha'),
    (jt.optim.rmsprop, dict(alpha=1.5), 'alpha'),  # torch accepts it; the second moment goes negative: NaN
    (jt.optim.rmsprop, dict(alpha=1.0), 'alpha'),  # torch accepts it; the average stays 0: every step is g / eps
    (jt.optim.rmsprop, dict(momentum=-0.9), 'momentum'),
    (jt.optim.rmsprop, dict(momentum=1.5), 'momentum'),  # torch accepts it; the buffer grows like 1.5**t
    (jt.optim.rmsprop, dict(centered=1), 'centered'),
    (jt.optim.rmsprop, dict(maximize=None), 'maximize'),
    (jt.optim.sgdw, dict(learning_rate=float('nan')), 'learning_rate'),
    (jt.optim.sgdw, dict(momentum=-0.1), 'momentum'),
    (jt.optim.sgdw, dict(momentum=1.5), 'momentum'),  # timm accepts it; the buffer grows like 1.5**t
    (jt.optim.sgd, dict(momentum=1.5), 'momentum'),  # torch accepts it; the buffer grows like 1.5**t
    (jt.optim.sgdw, dict(dampening=1.5), 'dampening'),
    (jt.optim.sgdw, dict(nesterov=True, momentum=0.0), 'nesterov'),
    (jt.optim.sgdw, dict(nesterov=True, momentum=0.9, dampening=0.1), 'nesterov'),
    (jt.optim.sgdw, dict(caution='on'), 'caution'),
    (jt.optim.sgdw, dict(learning_rate=lambda t: 0.1, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.sgdw, dict(learning_rate=0.0, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.nadamw, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.nadamw, dict(betas=(0.9,)), 'betas'),
    (jt.optim.nadamw, dict(eps=-1e-8), 'eps'),
    (jt.optim.nadamw, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.nadamw, dict(clipping_threshold=0.0), 'clipping_threshold'),
    (jt.optim.nadamw, dict(clipping_threshold=-1.0), 'clipping_threshold'),
    (jt.optim.nadamw, dict(learning_rate=lambda t: 0.1, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.adamw_legacy, dict(clipping_threshold=0.0), 'clipping_threshold'),
    (jt.optim.adamw_legacy, dict(learning_rate=lambda t: 0.1, corrected_weight_decay=True), 'max_lr'),
    # --- Lamb
    (jt.optim.lamb, dict(learning_rate=-1e-3), 'learning_rate'),
    (jt.optim.lamb, dict(betas=(1.0, 0.999)), 'betas'),
    (jt.optim.lamb, dict(betas=(0.9, -0.1)), 'betas'),
    (jt.optim.lamb, dict(betas=(0.9,)), 'betas'),
    (jt.optim.lamb, dict(eps=-1e-6), 'eps'),
    (jt.optim.lamb, dict(weight_decay=-0.01), 'weight_decay'),
    (jt.optim.lamb, dict(weight_decay={'w': 0.1, 'b': -0.1}), 'weight_decay'),
    (jt.optim.lamb, dict(max_grad_norm=0.0), 'max_grad_norm'),
    (jt.optim.lamb, dict(max_grad_norm=-1.0), 'max_grad_norm'),
    (jt.optim.lamb, dict(trust_clip='yes'), 'trust_clip'),
    (jt.optim.lamb, dict(always_adapt=1), 'always_adapt'),
    (jt.optim.lamb, dict(bias_correction=None), 'bias_correction'),
    (jt.optim.lamb, dict(grad_averaging=0), 'grad_averaging'),
    (jt.optim.lamb, dict(caution='on'), 'caution'),
    (jt.optim.lamb, dict(decoupled_decay=1), 'decoupled_decay'),
    (jt.optim.lamb, dict(learning_rate=lambda t: 1e-3, decoupled_decay=True, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.lamb, dict(learning_rate=0.0, decoupled_decay=True, corrected_weight_decay=True), 'max_lr'),
    # --- Lars
    (jt.optim.lars, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.lars, dict(momentum=-0.1), 'momentum'),
    (jt.optim.lars, dict(momentum=1.5), 'momentum'),  # timm accepts it; the buffer grows like 1.5**t
    (jt.optim.lars, dict(dampening=1.5), 'dampening'),
    (jt.optim.lars, dict(weight_decay=-1e-4), 'weight_decay'),
    (jt.optim.lars, dict(eps=-1e-8), 'eps'),
    (jt.optim.lars, dict(trust_coeff=0.0), 'trust_coeff'),
    (jt.optim.lars, dict(trust_coeff=-0.001), 'trust_coeff'),
    (jt.optim.lars, dict(nesterov=True), 'nesterov'),
    (jt.optim.lars, dict(nesterov=True, momentum=0.9, dampening=0.1), 'nesterov'),
    (jt.optim.lars, dict(trust_clip=1), 'trust_clip'),
    (jt.optim.lars, dict(always_adapt='no'), 'always_adapt'),
    # --- the trust-ratio primitive shared by Lamb and Lars
    (scale_by_trust_ratio, dict(weight_decay=0.1, form='adam'), 'form'),
    (scale_by_trust_ratio, dict(weight_decay=0.1, form='lars', trust_clip=True), 'learning_rate'),
    (scale_by_trust_ratio, dict(weight_decay=0.1, form='lamb', decoupled_decay=True), 'learning_rate'),
    (scale_by_trust_ratio, dict(weight_decay=0.1, eps=-1.0), 'eps'),
    # --- Adafactor, AdaHessian, AdamP, SGDP
    (jt.optim.adafactor, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adafactor, dict(betas=(1.0, 0.999)), 'betas'),
    (jt.optim.adafactor, dict(eps=-1e-30), 'eps'),
    (jt.optim.adafactor, dict(eps_scale=-1.0), 'eps_scale'),
    (jt.optim.adafactor, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adafactor, dict(clip_threshold=0.0), 'clip_threshold'),
    (jt.optim.adafactor, dict(decay_rate=0.5), 'decay_rate'),
    (jt.optim.adafactor, dict(learning_rate=1e-2, warmup_init=True), 'warmup_init'),
    (jt.optim.adafactor, dict(min_dim_size_to_factor=-1), 'min_dim_size_to_factor'),
    (jt.optim.adafactor, dict(layout='nhwc'), 'layout'),
    (jt.optim.adafactor, dict(scale_parameter=1), 'scale_parameter'),
    (jt.optim.adahessian, dict(learning_rate=-0.1), 'learning_rate'),
    (jt.optim.adahessian, dict(betas=(0.9, 1.0)), 'betas'),
    (jt.optim.adahessian, dict(eps=-1.0), 'eps'),
    (jt.optim.adahessian, dict(weight_decay=-1.0), 'weight_decay'),
    (jt.optim.adahessian, dict(hessian_power=1.5), 'hessian_power'),
    (jt.optim.adahessian, dict(update_each=0), 'update_each'),
    (jt.optim.adahessian, dict(n_samples=0), 'n_samples'),
    (jt.optim.adahessian, dict(n_samples=1.5), 'n_samples'),
    (jt.optim.adahessian, dict(layout='nchw'), 'layout'),
    (jt.optim.adamp, dict(learning_rate=-1e-3), 'learning_rate'),
    (jt.optim.adamp, dict(betas=(-0.1, 0.999)), 'betas'),
    (jt.optim.adamp, dict(eps=-1e-8), 'eps'),
    (jt.optim.adamp, dict(weight_decay=-1e-2), 'weight_decay'),
    (jt.optim.adamp, dict(delta=-0.1), 'delta'),
    (jt.optim.adamp, dict(wd_ratio=-0.1), 'wd_ratio'),
    (jt.optim.sgdp, dict(), 'learning_rate'),
    (jt.optim.sgdp, dict(learning_rate=-0.1), 'learning_rate'),
    (jt.optim.sgdp, dict(learning_rate=0.1, momentum=1.0), 'momentum'),
    (jt.optim.sgdp, dict(learning_rate=0.1, dampening=-0.1), 'dampening'),
    (jt.optim.sgdp, dict(learning_rate=0.1, eps=-1.0), 'eps'),
    (jt.optim.sgdp, dict(learning_rate=0.1, weight_decay=-1.0), 'weight_decay'),
    (jt.optim.sgdp, dict(learning_rate=0.1, delta=-1.0), 'delta'),
    (jt.optim.sgdp, dict(learning_rate=0.1, wd_ratio=-1.0), 'wd_ratio'),
    (jt.optim.sgdp, dict(learning_rate=0.1, nesterov='yes'), 'nesterov'),
    # --- Adafactor Big Vision
    (jt.optim.adafactor_bv, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adafactor_bv, dict(min_dim_size_to_factor=-1), 'min_dim_size_to_factor'),
    (jt.optim.adafactor_bv, dict(min_dim_size_to_factor=1.5), 'min_dim_size_to_factor'),
    (jt.optim.adafactor_bv, dict(decay_rate=-0.8), 'decay_rate'),
    (jt.optim.adafactor_bv, dict(decay_offset=-1), 'decay_offset'),
    (jt.optim.adafactor_bv, dict(beta2_cap=1.5), 'beta2_cap'),
    (jt.optim.adafactor_bv, dict(momentum=-0.5), 'momentum'),
    (jt.optim.adafactor_bv, dict(momentum=1.0), 'momentum'),
    (jt.optim.adafactor_bv, dict(momentum_dtype='int8'), 'momentum_dtype'),
    (jt.optim.adafactor_bv, dict(momentum_dtype=jnp.int32), 'momentum_dtype'),
    (jt.optim.adafactor_bv, dict(eps=-1e-8), 'eps'),
    (jt.optim.adafactor_bv, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adafactor_bv, dict(clipping_threshold=0.0), 'clipping_threshold'),
    (jt.optim.adafactor_bv, dict(unscaled_wd=1), 'unscaled_wd'),
    (jt.optim.adafactor_bv, dict(caution='yes'), 'caution'),
    (jt.optim.adafactor_bv, dict(corrected_weight_decay=None), 'corrected_weight_decay'),
    (jt.optim.adafactor_bv, dict(layout='jax'), 'layout'),
    (jt.optim.adafactor_bv, dict(learning_rate=0.0, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.adafactor_bv, dict(max_lr=0.0), 'max_lr'),  # checked even when unused (corrected=False)
    (jt.optim.sgdw, dict(max_lr=float('nan')), 'max_lr'),
    # --- PSGD Kron
    (jt.optim.kron, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.kron, dict(momentum=1.0), 'momentum'),
    (jt.optim.kron, dict(momentum=-0.1), 'momentum'),
    (jt.optim.kron, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.kron, dict(preconditioner_update_probability=1.5), 'preconditioner_update_probability'),
    (jt.optim.kron, dict(preconditioner_update_probability=-0.1), 'preconditioner_update_probability'),
    (jt.optim.kron, dict(memory_save_mode='two_diag'), 'memory_save_mode'),
    (jt.optim.kron, dict(precond_lr=-0.1), 'precond_lr'),
    (jt.optim.kron, dict(precond_init_scale=None), 'precond_init_scale'),
    (jt.optim.kron, dict(precond_init_scale=0.0), 'precond_init_scale'),
    (jt.optim.kron, dict(max_size_triangular=2.5), 'max_size_triangular'),
    (jt.optim.kron, dict(min_ndim_triangular='2'), 'min_ndim_triangular'),
    (jt.optim.kron, dict(mu_dtype='int8'), 'mu_dtype'),
    (jt.optim.kron, dict(precond_dtype='float8'), 'precond_dtype'),
    (jt.optim.kron, dict(flatten='yes'), 'flatten'),
    (jt.optim.kron, dict(deterministic=1), 'deterministic'),
    (jt.optim.kron, dict(layout='jax'), 'layout'),
    (jt.optim.kron, dict(corrected_weight_decay=True, decoupled_decay=True, learning_rate=lambda t: 1e-2), 'max_lr'),
    # --- Muon / AdaMuon
    (jt.optim.muon, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.muon, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.muon, dict(momentum=1.0), 'momentum'),
    (jt.optim.muon, dict(momentum=-0.1), 'momentum'),
    (jt.optim.muon, dict(eps=-1e-7), 'eps'),
    (jt.optim.muon, dict(betas=(0.9, 1.0)), 'betas'),
    (jt.optim.muon, dict(ns_steps=-1), 'ns_steps'),
    (jt.optim.muon, dict(ns_steps=2.5), 'ns_steps'),
    (jt.optim.muon, dict(ns_coefficients='cubic'), 'ns_coefficients'),
    (jt.optim.muon, dict(ns_coefficients=[(1.0, 2.0)]), 'ns_coefficients'),
    (jt.optim.muon, dict(ns_coefficients=[]), 'ns_coefficients'),
    (jt.optim.muon, dict(safety_factor=0.0), 'safety_factor'),
    (jt.optim.muon, dict(safety_factor=0.5), 'safety_factor'),  # timm accepts it; Newton-Schulz diverges: NaN
    (jt.optim.muon, dict(adjust_lr_fn='rsqrt_in'), 'adjust_lr_fn'),
    (jt.optim.muon, dict(adjust_lr_fn='original', algo='adamuon'), 'adjust_lr_fn'),
    (jt.optim.muon, dict(adjust_lr_fn='bogus'), 'adjust_lr_fn'),
    (jt.optim.muon, dict(conv_mode='nhwc'), 'conv_mode'),
    (jt.optim.muon, dict(algo='adam'), 'algo'),
    (jt.optim.muon, dict(fallback_lr_scale=-1.0), 'fallback_lr_scale'),
    (jt.optim.muon, dict(nesterov=1), 'nesterov'),
    (jt.optim.muon, dict(ns_dtype='int8'), 'ns_dtype'),
    (jt.optim.muon, dict(layout='nchw'), 'layout'),
    # --- the factory: a bad value reaches the alias's check, or the factory names its own argument
    ('lamb', dict(lr=1e-3, betas=(0.9, 1.5)), 'betas'),
    ('larc', dict(lr=1e-3, trust_coeff=-1.0), 'trust_coeff'),
    ('madgrad', dict(lr=-0.1), 'lr'),
    ('novogradc', dict(lr=-0.1), 'lr'),
    ('rmsproptfc', dict(lr=-0.1), 'lr'),
]


def _case_id(builder, kwargs):
    name = f'factory:{builder}' if isinstance(builder, str) else builder.__name__
    return '-'.join([name, *kwargs]) if kwargs else f'{name}-no_args'


def _ids(cases):
    ids, seen = [], {}
    for builder, kwargs, _ in cases:
        base = _case_id(builder, kwargs)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f'{base}-{seen[base]}')
    return ids


@pytest.mark.parametrize('builder,kwargs,match', CASES, ids=_ids(CASES))
def test_invalid_hyperparameter_is_refused(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        if isinstance(builder, str):
            jt.create_optimizer_v2(PARAMS, builder, **kwargs)
        else:
            builder(**kwargs)


def test_corrected_schedule_needs_max_lr():
    """adafactor_bv: a bare callable schedule has no peak lr; a timm-style schedule carries ``base_lr``."""
    with pytest.raises(ValueError, match='max_lr'):
        jt.optim.adafactor_bv(lambda t: 0.1, corrected_weight_decay=True)
    jt.optim.adafactor_bv(jt.scheduler.cosine(0.1, 100), corrected_weight_decay=True)  # carries base_lr


def test_corrected_decay_uses_schedule_base_lr():
    sched, _ = jt.create_scheduler_v2(0.1, sched='cosine', num_epochs=10)
    jt.optim.sgdw(sched, weight_decay=0.1, corrected_weight_decay=True)  # peak taken from sched.base_lr
    jt.optim.nadamw(sched, corrected_weight_decay=True)
