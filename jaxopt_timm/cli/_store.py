"""Crash-safe files for ``train --output``: atomic writes, checksum manifests and committed folders.

A run can be interrupted at any instruction (Ctrl-C, a killed job, a full
disk), so nothing the command line writes may ever be seen half-written:

* a file (``summary.csv``, ``results.json``) is written under a temporary name
  in the same folder, flushed to disk, and renamed over the old one
  (:func:`atomic_write_text`): readers see the old file or the new one;
* a checkpoint is built in a temporary folder, every file in it is listed with
  its size and sha256 in ``MANIFEST.json`` (written last), and only then is
  the folder renamed to its visible name (:func:`commit_dir`). A visible
  checkpoint is therefore complete, and :func:`verify_manifest` detects one
  damaged later (flipped bytes, truncation, a lost file).

Temporary names start with a dot and end in ``.tmp-<pid>`` / ``.old-<pid>``;
:func:`leftovers` finds the ones an interrupted run left behind so the next
run can delete them. :func:`pause_point` is a hook for the interruption tests
only (it does nothing unless ``JAXOPT_TIMM_TEST_PAUSE`` is set).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from typing import Dict, List, Optional

__all__ = [
    'MANIFEST',
    'atomic_write_text',
    'commit_dir',
    'discard_dir',
    'fsync_dir',
    'leftovers',
    'remove_leftovers',
    'temp_name',
    'write_manifest',
    'verify_manifest',
    'pause_point',
    'PAUSE_ENV',
]

MANIFEST = 'MANIFEST.json'
PAUSE_ENV = 'JAXOPT_TIMM_TEST_PAUSE'
_LEFTOVER = re.compile(r'^\..+\.(tmp|old)-\d+$')
_CHUNK = 1 << 20


def temp_name(directory: str, name: str, kind: str = 'tmp') -> str:
    """A path in ``directory`` for a temporary stand-in of ``name`` that no reader mistakes for it."""
    return os.path.join(directory, f'.{name}.{kind}-{os.getpid()}')


def leftovers(directory: str) -> List[str]:
    """Names in ``directory`` that an interrupted write left behind (temporary files and folders)."""
    return sorted(d for d in os.listdir(directory) if _LEFTOVER.match(d))


def remove_leftovers(directory: str) -> None:
    for name in leftovers(directory):
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def fsync_dir(path: str) -> None:
    """Make the entries of ``path`` (new names, renames) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` so that a reader (or a crash) sees either the old or the new file."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = temp_name(directory, os.path.basename(path))
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def _file_digest(path: str) -> str:
    """sha256 of the file at ``path``; also flushes it to disk (fsync works on a read-only descriptor)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    return h.hexdigest()


def _files(root: str) -> List[str]:
    """Every regular file under ``root`` as a '/'-separated path relative to it, sorted; the manifest excluded."""
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, '/')
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def write_manifest(root: str) -> None:
    """List every file under ``root`` with its size and sha256 in ``root/MANIFEST.json`` (written last),
    and flush the files and folders to disk."""
    files = {
        rel: dict(size=os.path.getsize(os.path.join(root, rel)), sha256=_file_digest(os.path.join(root, rel)))
        for rel in _files(root)
    }
    with open(os.path.join(root, MANIFEST), 'w') as f:
        json.dump(dict(format=1, files=files), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    for dirpath, _, _ in os.walk(root, topdown=False):
        fsync_dir(dirpath)


def verify_manifest(root: str) -> Optional[str]:
    """``None`` when every file listed in ``root/MANIFEST.json`` is present with its size and sha256;
    otherwise what is wrong, in a few words (the first problem found)."""
    path = os.path.join(root, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
        files: Dict[str, Dict[str, object]] = manifest['files']
        if not isinstance(files, dict) or not files:
            return f'{MANIFEST} lists no files'
    except FileNotFoundError:
        return f'no {MANIFEST} (not written by this version, or not written completely)'
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return f'{MANIFEST} is unreadable ({type(e).__name__})'
    for rel, want in sorted(files.items()):
        full = os.path.join(root, *rel.split('/'))
        if not os.path.isfile(full):
            return f'{rel} is missing'
        size = os.path.getsize(full)
        want_size = want.get('size')
        if size != want_size:
            cut = ' (truncated)' if isinstance(want_size, int) and size < want_size else ''
            return f'{rel} has {size} bytes, the manifest says {want_size}{cut}'
        if _file_digest(full) != want.get('sha256'):
            return f'{rel} does not match its sha256 (its bytes changed)'
    return None


def commit_dir(tmp: str, final: str) -> None:
    """Rename the finished folder ``tmp`` to ``final`` (replacing an older ``final``) and make it durable.

    A folder cannot be renamed over a non-empty one, so an existing ``final`` is first moved aside
    under a temporary name, then deleted; an interruption in between leaves ``final`` absent (the
    previous checkpoint stays the newest) and the moved-aside folder is a leftover, never a checkpoint.
    """
    parent = os.path.dirname(final)
    old = None
    if os.path.exists(final):
        old = temp_name(parent, os.path.basename(final), 'old')
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def discard_dir(path: str) -> None:
    """Delete the folder ``path`` so that it vanishes at once: renamed to a leftover name first, so an
    interruption mid-delete never leaves a half-deleted folder under its visible name."""
    old = temp_name(os.path.dirname(path), os.path.basename(path), 'old')
    os.rename(path, old)
    shutil.rmtree(old, ignore_errors=True)


def pause_point(stage: str, epoch: int) -> None:
    """Test hook: with ``JAXOPT_TIMM_TEST_PAUSE=stage@epoch=FLAGFILE`` in the environment, reaching
    ``stage`` at ``epoch`` writes ``FLAGFILE`` and waits (up to two minutes) to be killed, so the
    interruption tests can stop the process at a known moment of a checkpoint save."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    where, _, flag = spec.partition('=')
    if where != f'{stage}@{epoch}':
        return
    with open(flag, 'w') as f:
        f.write(where)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.02)
