"""A few jitted steps of a transformation on fixed ``sin`` gradients (shared by the packing tests)."""
import jax
import jax.numpy as jnp
import optax


def run_steps(tx, tree, steps=4):
    """``(params, state)`` after ``steps`` updates with grads ``sin(3 p + t) + 0.1`` (computed in float32)."""
    @jax.jit
    def f(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    p, s = tree, tx.init(tree)
    for t in range(steps):
        g = jax.tree.map(lambda x: (jnp.sin(3.0 * x.astype(jnp.float32) + t) + 0.1).astype(x.dtype), p)
        p, s = f(p, s, g)
    return p, s


def update_extras(name):
    """The extra ``update`` arguments a registered name needs, as stand-ins for a loss of ``0.5 * sum p^2``:
    AdaHessian's ``hvp_fn`` is its (unit) Hessian, ``H v = v``, and SAM's ``grad_fn`` its gradient, ``p``. Both
    accept any subtree (a masked or partitioned one)."""
    import jaxopt_timm as jt
    info = jt.get_optimizer_info(name)
    extra = {}
    if info.second_order:
        extra['hvp_fn'] = lambda v: v
    if info.grad_fn:
        extra['grad_fn'] = lambda p: p
    return extra
