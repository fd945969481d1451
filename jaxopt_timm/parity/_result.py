"""The deviation metric, its tolerance, and the result of one side-by-side run.

A run is judged by ``max |ours - timm|`` over every leaf, divided by the
largest displacement ``max |timm_final - init|``: an absolute error means
nothing without the size of the move it is an error of. Parity is a deviation
of at most :data:`TOL` (float32 arithmetic in a different order on each side
stays well inside it over a few dozen steps). A run whose params barely move
(:data:`MIN_DISPLACEMENT`) proves nothing and fails its check.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Tuple

import jax
import numpy as np

__all__ = ['TOL', 'MIN_DISPLACEMENT', 'deviation', 'ParityResult']

TOL = 2e-4  # the parity bound on the deviation
MIN_DISPLACEMENT = 1e-4  # a run that barely moves the params proves nothing


def deviation(
    ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray], init: Mapping[str, np.ndarray]
) -> Tuple[float, float, float]:
    """``(deviation, max abs error, displacement)``: ``max|ours - theirs| / max|theirs - init|`` over the leaves
    of ``theirs`` (flat dicts keyed by the same names)."""
    max_abs = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in theirs)
    displacement = max(float(np.max(np.abs(theirs[k] - init[k]))) for k in theirs)
    return max_abs / max(displacement, 1e-30), max_abs, displacement


@dataclasses.dataclass
class ParityResult:
    """One run of ours against timm: the metric, how often our jitted step was traced, both final param dicts
    (flat, keyed by dotted names) and our final optimizer state."""

    rel_err: float
    max_abs_err: float
    displacement: float
    traces: int
    ours: Dict[str, np.ndarray]
    theirs: Dict[str, np.ndarray]
    state: Any

    def within(self, tol: float = TOL) -> bool:
        """The deviation is finite and at most ``tol``."""
        return bool(np.isfinite(self.rel_err)) and self.rel_err <= tol

    def check(self, tol: float = TOL) -> 'ParityResult':
        """Raise ``AssertionError`` saying what failed unless the run is a valid parity pass within ``tol``: one
        trace of our step, a real displacement, the deviation bound, and an optimizer state of arrays only."""
        if self.traces != 1:
            raise AssertionError(f'jitted step traced {self.traces} times, expected exactly once')
        if not self.displacement > MIN_DISPLACEMENT:
            raise AssertionError(f'params barely moved ({self.displacement:.3g}): vacuous test')
        if not self.rel_err <= tol:
            raise AssertionError(
                f'parity error {self.rel_err:.3g} > {tol:g} (max abs {self.max_abs_err:.3g}, '
                f'displacement {self.displacement:.3g}); worst leaf: {self.worst_leaf()}'
            )
        bad = [type(x).__name__ for x in jax.tree.leaves(self.state) if not isinstance(x, jax.Array)]
        if bad:
            raise AssertionError(f'optimizer state holds non-array leaves: {bad}')
        return self

    def worst_leaf(self) -> str:
        """The name of the leaf with the largest ``|ours - timm|``."""
        errs = {k: float(np.max(np.abs(self.ours[k] - self.theirs[k]))) for k in self.ours}
        return max(errs, key=errs.__getitem__)
