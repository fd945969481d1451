"""What the ``train`` job keeps on disk under ``--output DIR``, and reads back with ``--resume``.

A checkpoint (``DIR/checkpoint-<epoch>``, through orbax) holds the full
training state: params, optimizer state and the schedule position (epoch,
update count, plateau state and lr), so a resumed run continues bit-exactly.
Beside it sit ``meta.json`` (the run's recipe), and in ``DIR`` the per-epoch
``summary.csv`` and the final ``results.json``. The state is stored as flat
numbered leaves restored into the structure of a freshly built state, so
nothing about the optimizer's pytree types needs to be serialisable.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ._args import CLIError

__all__ = ['TrainState', 'save_checkpoint', 'latest_checkpoint', 'load_checkpoint', 'append_summary',
           'write_results']

_CHECKPOINT_DIR = re.compile(r'^checkpoint-(\d+)$')


@dataclasses.dataclass
class TrainState:
    """Everything a run needs to continue: what a checkpoint holds."""
    params: Any
    opt_state: Any
    epoch: int = 0          # next epoch to run
    step: int = 0           # updates done
    plateau: Any = None     # PlateauState for --sched plateau
    lr: float = 0.0         # lr of the next epoch (plateau)


def _array_tree(state: TrainState) -> Dict[str, Any]:
    """The pytree parts of ``state``, in the order their leaves are numbered on disk."""
    return {'params': state.params, 'opt_state': state.opt_state, 'plateau': state.plateau}


def _checkpoint_dirs(output: str) -> List[Tuple[int, str]]:
    """``(epoch, name)`` of the ``checkpoint-N`` directories in ``output``, oldest first."""
    return sorted((int(m.group(1)), d) for d in os.listdir(output) if (m := _CHECKPOINT_DIR.match(d)))


def _flat_state(state: TrainState) -> Dict[str, Any]:
    out = {}
    for i, leaf in enumerate(jax.tree.leaves(_array_tree(state))):
        if jnp.issubdtype(getattr(leaf, 'dtype', np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f'leaf_{i:05d}'] = np.asarray(leaf)
    out['epoch'] = np.asarray(state.epoch, np.int64)
    out['step'] = np.asarray(state.step, np.int64)
    out['lr'] = np.asarray(state.lr, np.float64)
    return out


def save_checkpoint(output: str, state: TrainState, keep: int, meta: Dict[str, Any]) -> str:
    """Write ``output/checkpoint-<epoch>`` (orbax) holding the full training state; keep the newest ``keep``."""
    import orbax.checkpoint as ocp
    path = os.path.abspath(os.path.join(output, f'checkpoint-{state.epoch}'))
    if os.path.exists(path):
        shutil.rmtree(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(path, 'state'), _flat_state(state))
        ckptr.wait_until_finished()
    with open(os.path.join(path, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    for _, d in _checkpoint_dirs(output)[:-keep]:
        shutil.rmtree(os.path.join(output, d))
    return path


def latest_checkpoint(path: str) -> str:
    """``path`` itself when it names a ``checkpoint-N`` directory, else its newest ``checkpoint-N``."""
    if _CHECKPOINT_DIR.match(os.path.basename(os.path.normpath(path))):
        return path
    found = _checkpoint_dirs(path)
    if not found:
        raise CLIError(f'no checkpoint-N directory in {path!r}')
    return os.path.join(path, found[-1][1])


def load_checkpoint(path: str, template: TrainState) -> TrainState:
    """The state saved at ``path``, restored into the structure (and dtypes) of ``template``."""
    import orbax.checkpoint as ocp
    if not os.path.isdir(path):
        raise CLIError(f'--resume {path!r}: no such checkpoint')
    path = os.path.abspath(latest_checkpoint(path))
    target = _flat_state(template)
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in target.items()}
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(os.path.join(path, 'state'), abstract)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise CLIError(f'--resume {path!r} does not match this model / optimizer: {e}') from None
    leaves, treedef = jax.tree.flatten(_array_tree(template))
    new = []
    for i, leaf in enumerate(leaves):
        value = restored[f'leaf_{i:05d}']
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(leaf))
        else:
            value = jnp.asarray(value, leaf.dtype)
        new.append(value)
    tree = jax.tree.unflatten(treedef, new)
    return TrainState(tree['params'], tree['opt_state'], int(restored['epoch']), int(restored['step']),
                      tree['plateau'], float(restored['lr']))


def append_summary(output: str, row: Dict[str, float]) -> None:
    """Add one epoch's row to ``output/summary.csv`` (the header first when the file is new)."""
    path = os.path.join(output, 'summary.csv')
    new = not os.path.exists(path)
    with open(path, 'a') as f:
        if new:
            f.write(','.join(row) + '\n')
        f.write(','.join(f'{v:.6g}' if isinstance(v, float) else str(v) for v in row.values()) + '\n')


def write_results(output: str, meta: Dict[str, Any], **results: Any) -> None:
    """Write ``output/results.json``: the run's recipe ``meta`` followed by its ``results``."""
    with open(os.path.join(output, 'results.json'), 'w') as f:
        json.dump(dict(meta, **results), f, indent=1)
