"""The ``train`` job's data: scikit-learn's bundled digits, a fixed split and a resumable batch order.

The digits ship with scikit-learn (1,797 8x8 images, no download), so the job
runs offline. The 80/20 split (1,437 train / 360 test) is fixed, independent
of ``--seed``, so runs with different seeds are scored on the same images.
The batch order of an epoch is a pure function of ``(seed, epoch)``: a run
resumed from a checkpoint sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import functools
from typing import Iterator, Tuple

import numpy as np

from ._args import CLIError

__all__ = ['load_digits_split', 'epoch_order', 'epoch_batches', 'NUM_TEST']

NUM_TEST = 360  # images held out for the test split


@functools.lru_cache(maxsize=1)
def load_digits_split() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits, scaled to [0, 1], in a fixed 1437 / 360 split:
    ``(x_train, y_train, x_test, y_test)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise CLIError('scikit-learn is needed for the digits data: pip install scikit-learn') from e
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    test, train = order[:NUM_TEST], order[NUM_TEST:]
    return x[train], y[train], x[test], y[test]


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """Batch order of ``epoch``: a pure function of ``(seed, epoch)``, which makes resuming exact."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_batches(seed: int, epoch: int, n: int, batch_size: int) -> Iterator[np.ndarray]:
    """The index arrays of the ``n // batch_size`` full batches of ``epoch`` (the last partial one is
    dropped, as timm's train loader does)."""
    order = epoch_order(seed, epoch, n)
    for b in range(n // batch_size):
        yield order[b * batch_size : (b + 1) * batch_size]
