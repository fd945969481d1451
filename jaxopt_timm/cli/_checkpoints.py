"""What the ``train`` job keeps on disk under ``--output DIR``, and reads back with ``--resume``.

A checkpoint (``DIR/checkpoint-<epoch>``) holds the full training state:
params, optimizer state, the ``--model-ema`` average and the schedule position
(epoch, update count, plateau state and lr) through orbax in ``state/``, so a resumed run continues
bit-exactly; and in ``meta.json`` the run's recorded arguments (compared on
``--resume``), the per-epoch history up to that epoch and the training time.
The state is stored as flat numbered leaves restored into the structure of a
freshly built state, so nothing about the optimizer's pytree types needs to be
serialisable.

Nothing is ever visible half-written (:mod:`._store`): a checkpoint is built
under a temporary name with a ``MANIFEST.json`` of its files' sha256 and
renamed into place when complete; loading verifies the manifest. ``summary.csv``
and ``results.json`` are rewritten whole (temporary file + rename) from the
history of the checkpoint they belong to, so after any interruption and a
resume every epoch appears exactly once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ._args import CLIError, folder_problem
from ._store import (
    MANIFEST,
    atomic_write_text,
    commit_dir,
    discard_dir,
    leftovers,
    pause_point,
    remove_leftovers,
    temp_name,
    verify_manifest,
    write_manifest,
)

__all__ = [
    'TrainState',
    'save_checkpoint',
    'latest_checkpoint',
    'read_checkpoint',
    'restore_state',
    'run_dir',
    'same_folder',
    'check_output',
    'create_output',
    'write_summary',
    'write_results',
    'params_digest',
]

_CHECKPOINT_DIR = re.compile(r'^checkpoint-(\d+)$')


@dataclasses.dataclass
class TrainState:
    """Everything a run needs to continue: what a checkpoint holds."""

    params: Any
    opt_state: Any
    epoch: int = 0  # next epoch to run
    step: int = 0  # updates done
    plateau: Any = None  # PlateauState for --sched plateau
    lr: float = 0.0  # lr of the next epoch (plateau)
    history: List[Dict[str, float]] = dataclasses.field(default_factory=list)  # summary rows, epochs 1..epoch
    train_time_s: float = 0.0  # training time up to ``epoch``, over all the processes that ran it
    ema: Any = None  # ModelEmaState for --model-ema


def _array_tree(state: TrainState) -> Dict[str, Any]:
    """The pytree parts of ``state``, in the order their leaves are numbered on disk."""
    # without --model-ema, 'ema' holds no leaf: the numbering (and older checkpoints) stay as they were
    return {'params': state.params, 'opt_state': state.opt_state, 'plateau': state.plateau, 'ema': state.ema}


def _checkpoint_dirs(output: str) -> List[Tuple[int, str]]:
    """``(epoch, name)`` of the ``checkpoint-N`` directories in ``output``, oldest first."""
    return sorted((int(m.group(1)), d) for d in os.listdir(output) if (m := _CHECKPOINT_DIR.match(d)))


def _layout(state: TrainState) -> List[str]:
    """``'<path> <dtype>[<shape>]'`` of every stored leaf, in order: what a restore must find again (orbax
    would otherwise restore an array into a target of another shape without a word)."""
    flat = _flat_state(state)
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(_array_tree(state))[0]]
    return [f'{name} {flat[f"leaf_{i:05d}"].dtype}{list(flat[f"leaf_{i:05d}"].shape)}' for i, name in enumerate(names)]


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


def save_checkpoint(output: str, state: TrainState, keep: int, config: Dict[str, Any]) -> str:
    """Write ``output/checkpoint-<epoch>`` (the full state, ``config`` and the history), then ``summary.csv``
    from that history; keep the newest ``keep`` checkpoints. Returns the checkpoint's path.

    The checkpoint is assembled under a temporary name, its ``MANIFEST.json`` written last, and renamed
    into place only when complete; an interruption leaves the previous checkpoint the newest, plus a
    temporary folder the next run deletes. Checkpoints of later epochs (a run resumed from an older
    checkpoint into its own folder) are replaced: they belong to the branch this run abandoned.
    """
    import orbax.checkpoint as ocp

    output = os.path.abspath(output)
    name = f'checkpoint-{state.epoch}'
    final, tmp = os.path.join(output, name), temp_name(output, name)
    try:
        os.makedirs(tmp)
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(os.path.join(tmp, 'state'), _flat_state(state))
            ckptr.wait_until_finished()
        pause_point('save-state', state.epoch)
        meta = dict(
            format=2,
            epoch=state.epoch,
            step=state.step,
            train_time_s=state.train_time_s,
            config=config,
            layout=_layout(state),
            history=state.history,
        )
        with open(os.path.join(tmp, 'meta.json'), 'w') as f:
            json.dump(meta, f, indent=1)  # key order kept: it is summary.csv's column order
        write_manifest(tmp)
        pause_point('save-manifest', state.epoch)
        commit_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pause_point('save-committed', state.epoch)
    write_summary(output, state.history)
    done = _checkpoint_dirs(output)
    stale = [d for n, d in done if n > state.epoch] + [d for n, d in done if n <= state.epoch][:-keep]
    for d in stale:
        discard_dir(os.path.join(output, d))
    return final


def run_dir(path: str) -> str:
    """The run folder of a ``--resume`` path: its parent for ``DIR/checkpoint-N``, else the path itself."""
    path = os.path.abspath(path)
    return os.path.dirname(path) if _CHECKPOINT_DIR.match(os.path.basename(path)) else path


def latest_checkpoint(path: str) -> str:
    """``path`` itself when it names a ``checkpoint-N`` folder, else its newest ``checkpoint-N``.

    Only complete checkpoints carry that name (they are renamed into place when finished), so the
    temporary folders of an interrupted save are never picked.
    """
    if not os.path.isdir(path):
        raise CLIError(f'--resume {path!r}: no such checkpoint or run folder')
    path = os.path.abspath(path)
    if _CHECKPOINT_DIR.match(os.path.basename(path)):
        return path
    found = _checkpoint_dirs(path)
    if not found:
        partial = [d for d in leftovers(path) if d.startswith('.checkpoint-')]
        raise CLIError(
            f'--resume {path!r}: no checkpoint-N folder in it'
            + (f' (only {", ".join(partial)}, left unfinished by an interrupted save)' if partial else '')
        )
    return os.path.join(path, found[-1][1])


def same_folder(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same existing folder (symlinks and relative paths resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(output: str, resume: str) -> None:
    """Refuse an ``--output`` that is a file, or a non-empty folder that is not the run being resumed:
    a new run there would delete the old run's checkpoints and mix both in ``summary.csv``."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise CLIError(f'--output {output!r} is a file; give a folder (new, or empty)')
    if not os.path.isdir(output):
        return
    entries = [d for d in sorted(os.listdir(output)) if d not in leftovers(output)]
    if not entries or (resume and same_folder(run_dir(resume), output)):
        return
    shown = ', '.join(entries[:3]) + (f' and {len(entries) - 3} more' if len(entries) > 3 else '')
    hint = f', or --resume {output} to continue the run in it' if _checkpoint_dirs(output) else ''
    raise CLIError(f'--output {output!r} is not empty ({shown}); give a new or empty folder{hint}')


def create_output(output: str) -> None:
    """Create ``--output`` and check it takes files, before any training; delete what an interrupted
    run left half-written there (temporary files and checkpoint folders, never a complete checkpoint)."""
    try:
        os.makedirs(output, exist_ok=True)
        probe = temp_name(output, 'probe')
        with open(probe, 'w'):
            pass
        os.unlink(probe)
    except OSError as e:
        raise CLIError(
            f'--output {output!r}: cannot write there ({folder_problem(output) or e.strerror or e})'
        ) from None
    remove_leftovers(output)


def _intact_older(path: str) -> str:
    """The error's tail for a damaged checkpoint: the newest older checkpoint that verifies, if any."""
    m = _CHECKPOINT_DIR.match(os.path.basename(path))
    assert m is not None  # latest_checkpoint gives checkpoint-N folders only
    folder, epoch = os.path.dirname(path), int(m.group(1))
    for n, d in reversed(_checkpoint_dirs(folder)):
        if n < epoch and verify_manifest(os.path.join(folder, d)) is None:
            older = os.path.join(folder, d)
            return f'; the older checkpoint {older} is intact: --resume {older} to continue from it'
    return '; no older intact checkpoint in its folder'


def read_checkpoint(path: str) -> Tuple[str, Dict[str, Any]]:
    """``(checkpoint path, its meta.json)`` for a ``--resume`` path, after checking every file against
    the checkpoint's manifest: a damaged checkpoint is refused, naming an intact older one if there is."""
    path = latest_checkpoint(path)
    problem = verify_manifest(path)
    meta: Optional[Dict[str, Any]] = None
    if problem is None:
        try:
            with open(os.path.join(path, 'meta.json')) as f:
                meta = json.load(f)
            if not all(k in meta for k in ('config', 'history', 'epoch', 'layout')):
                problem = 'meta.json lacks the recorded arguments or history'
        except FileNotFoundError:
            problem = f'meta.json is not in {MANIFEST}'
        except ValueError:
            problem = 'meta.json is unreadable'
    if problem is not None or meta is None:
        raise CLIError(f'checkpoint {path} is damaged: {problem}{_intact_older(path)}')
    return path, meta


def restore_state(path: str, meta: Dict[str, Any], template: TrainState) -> TrainState:
    """The state saved at the (verified) checkpoint ``path``, restored into the structure and dtypes of
    ``template``, with the history and training time of ``meta``."""
    import orbax.checkpoint as ocp

    layout = _layout(template)
    stored = meta.get('layout', [])
    if stored != layout:
        diff = next(
            (f'{a} stored, {b} here' for a, b in zip(stored, layout) if a != b),
            f'{len(stored)} arrays stored, {len(layout)} here',
        )
        raise CLIError(f'--resume {path!r} does not match this model / optimizer: {diff}')
    target = _flat_state(template)
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in target.items()}
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(os.path.join(path, 'state'), abstract)
    except Exception as e:  # noqa: BLE001 - the files are verified: what is left is a different model / optimizer
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
    return TrainState(
        tree['params'],
        tree['opt_state'],
        int(restored['epoch']),
        int(restored['step']),
        tree['plateau'],
        float(restored['lr']),
        list(meta['history']),
        float(meta['train_time_s']),
        tree['ema'],
    )


def _csv_value(v: Any) -> str:
    return f'{v:.6g}' if isinstance(v, float) else str(v)


def write_summary(output: str, history: List[Dict[str, float]]) -> None:
    """Rewrite ``output/summary.csv`` whole, one row per epoch of ``history`` (a checkpoint's), atomically."""
    if history:
        lines = [','.join(history[0])] + [','.join(_csv_value(v) for v in row.values()) for row in history]
        atomic_write_text(os.path.join(output, 'summary.csv'), '\n'.join(lines) + '\n')


def params_digest(params: Any) -> str:
    """sha256 over the params' names, shapes, dtypes and bytes: equal digests, bit-identical params."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        value = np.asarray(leaf)
        h.update(f'{jax.tree_util.keystr(path)}|{value.dtype}|{value.shape}|'.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def write_results(output: str, results: Dict[str, Any]) -> None:
    """Write ``output/results.json`` atomically."""
    atomic_write_text(os.path.join(output, 'results.json'), json.dumps(results, indent=1) + '\n')
