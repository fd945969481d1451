"""The ``train`` job's jitted computations: the loss, one optimizer update and the evaluation.

The model's gradient and evaluation are compiled once per ``(model, smoothing)``
and shared by every optimizer (the test suite trains all of them in one
process); only the optimizer update is compiled per optimizer. Second-order
optimizers and SAM are the exception: they need the loss itself (a
Hessian-vector product, a second gradient at a perturbed point), so their
whole step is one jitted function.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

import jaxopt_timm as jt

__all__ = ['make_steps']


def _accuracy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def _loss_fn(model, smoothing: float):
    """``(params, x, y) -> (mean cross-entropy with label smoothing, logits)``."""

    def loss_fn(params, x, y):
        logits = model.apply({'params': params}, x)
        labels = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
        if smoothing:
            labels = optax.smooth_labels(labels, smoothing)
        return optax.softmax_cross_entropy(logits, labels).mean(), logits

    return loss_fn


def _grads_loss_accuracy(loss_fn, params, x, y):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    return grads, loss, _accuracy(logits, y)


@functools.lru_cache(maxsize=8)
def _model_steps(model, smoothing: float):
    """Jitted gradient and eval functions, built once per model and shared by every optimizer."""
    loss_fn = _loss_fn(model, smoothing)

    def grad_step(params, x, y):
        return _grads_loss_accuracy(loss_fn, params, x, y)

    def eval_step(params, x, y):
        logits = model.apply({'params': params}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, _accuracy(logits, y)

    return jax.jit(grad_step), jax.jit(eval_step)


def make_steps(model, tx, info, smoothing: float):
    """``(train_step, eval_step)`` for the optimizer of record ``info``; the optimizer update is its own jitted
    function so the model's gradient is compiled once per model (second-order optimizers and SAM jit the whole
    step: they need the loss).

    ``train_step(params, opt_state, x, y) -> (params, opt_state, loss, accuracy)``;
    ``eval_step(params, x, y) -> (loss, accuracy)``.
    """
    grad_step, eval_step = _model_steps(model, smoothing)
    if info.second_order or info.grad_fn:
        loss_fn = _loss_fn(model, smoothing)

        @jax.jit
        def whole_step(params, opt_state, x, y):
            grads, loss, acc = _grads_loss_accuracy(loss_fn, params, x, y)
            if info.second_order:
                extra = {'hvp_fn': jt.optim.hvp_fn_from_loss(lambda p, a, b: loss_fn(p, a, b)[0], params, x, y)}
            else:
                extra = {'grad_fn': lambda p: jax.grad(lambda q: loss_fn(q, x, y)[0])(p)}
            updates, opt_state = tx.update(grads, opt_state, params, **extra)
            return optax.apply_updates(params, updates), opt_state, loss, acc

        return whole_step, eval_step

    @jax.jit
    def apply_step(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def train_step(params, opt_state, x, y):
        grads, loss, acc = grad_step(params, x, y)
        params, opt_state = apply_step(params, opt_state, grads)
        return params, opt_state, loss, acc

    return train_step, eval_step
