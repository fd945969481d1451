"""The schedule gallery: one figure per schedule name, drawn at build time from ``jt.create_scheduler_v2``.

``.. jt-schedule-gallery::`` draws every name of
``jaxopt_timm.scheduler.SCHEDULERS`` (a new schedule appears without an edit
to the docs) with matplotlib's Agg canvas into ``_generated/schedules/`` (git-
ignored), and shows each with the exact call that built it and its deviation
from timm in the stored parity run (``_data/parity.json``), when it has one.
``plateau`` reacts to a metric: it is driven by a synthetic accuracy that
improves for a third of the run and then stalls, as ``jaxopt-timm schedule``
draws it.
"""
from __future__ import annotations

import os
import textwrap
from typing import Any, Dict, List, Tuple

from sphinx.util.docutils import SphinxDirective

from jt_generated import PARITY_JSON, load_parity

GENERATED = os.path.join('_generated', 'schedules')  # relative to the docs folder
LR = 0.1
COMMON: Dict[str, Any] = dict(num_epochs=60, warmup_epochs=5, min_lr=1e-3, step_on_epochs=False,
                              updates_per_epoch=10)
# per-name arguments that make each shape visible over the same 60 epochs
EXTRA: Dict[str, Dict[str, Any]] = {
    'step': dict(decay_epochs=15, decay_rate=0.5),
    'multistep': dict(decay_milestones=(20, 35, 50), decay_rate=0.5),
    'poly': dict(decay_rate=2.0),
    'wsd': dict(decay_epochs=0.3),
    'rsqrt': dict(decay_epochs=0.2),
    'plateau': dict(patience_epochs=4, decay_rate=0.5, step_on_epochs=True, updates_per_epoch=0),
    'onecycle': dict(warmup_epochs=0, min_lr=0.0),
}


def schedule_kwargs(name: str) -> Dict[str, Any]:
    return {**COMMON, **EXTRA.get(name, {})}


def call_text(name: str) -> List[str]:
    """The call that builds ``name``'s figure, wrapped to fit the page."""
    args = ', '.join([repr(LR), repr(name)] + [f'{k}={v!r}' for k, v in schedule_kwargs(name).items()])
    return ['sched, num_epochs = jt.create_scheduler_v2(',
            *textwrap.wrap(args + ')', width=76, initial_indent='    ', subsequent_indent='    ')]


def _plateau_curve(sched: Any, num_epochs: int) -> Tuple[Any, Any]:
    """Per epoch, as a training loop steps it: ``sched.step(state, epoch, metric)`` after each epoch."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    stall = max(num_epochs // 3, 1)

    def body(state, epoch):
        metric = jnp.minimum(epoch, stall).astype(jnp.float32) / num_epochs  # improves, then stalls
        return sched.step(state, epoch, metric)

    state = sched.init()
    _, lrs = jax.lax.scan(body, state, jnp.arange(1, num_epochs, dtype=jnp.int32))
    return np.arange(num_epochs), np.concatenate([[float(state.lr)], np.asarray(lrs, np.float64)])


def curve(name: str) -> Tuple[Any, Any, str]:
    """``(x in epochs, lr, x label)`` of ``name`` built with :func:`schedule_kwargs`."""
    import jax.numpy as jnp
    import numpy as np
    import jaxopt_timm as jt
    kw = schedule_kwargs(name)
    sched, num_epochs = jt.create_scheduler_v2(LR, name, **kw)
    if isinstance(sched, jt.scheduler.PlateauSchedule):
        x, lr = _plateau_curve(sched, num_epochs)
        return x, lr, 'epoch'
    upe = kw['updates_per_epoch'] if not kw['step_on_epochs'] else 1
    t = np.arange(num_epochs * upe)
    return t / upe, np.asarray(sched(jnp.asarray(t, jnp.int32)), np.float64), 'epoch'


def draw(name: str, path: str) -> None:
    """A PNG of ``name``'s curve, with matplotlib's Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    x, lr, xlabel = curve(name)
    fig = Figure(figsize=(6.4, 2.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, lr, color='C0', drawstyle='steps-post' if name == 'plateau' else 'default')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('learning rate')
    ax.set_title(name)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format='png', metadata={'Software': None})


class ScheduleGalleryDirective(SphinxDirective):
    """``.. jt-schedule-gallery::``: a section per schedule name with its figure, call and parity."""

    def run(self) -> list:
        import jaxopt_timm as jt
        self.env.note_dependency(os.path.join(self.env.srcdir, PARITY_JSON))
        folder = os.path.join(self.env.srcdir, GENERATED)
        os.makedirs(folder, exist_ok=True)
        schedules = load_parity(str(self.env.srcdir)).get('schedules', {})
        lines: List[str] = []
        for name in jt.scheduler.SCHEDULERS:
            draw(name, os.path.join(folder, f'{name}.png'))
            title = f"``'{name}'``"  # the string to pass (a bare name would clash with the API page's sections)
            lines += [title, '-' * len(title), '',
                      f'.. figure:: /{GENERATED}/{name}.png'.replace(os.sep, '/'),
                      f'   :alt: the {name} schedule: learning rate against epochs', '',
                      '.. code-block:: python', '', *[f'   {line}' for line in call_text(name)], '']
            entry = schedules.get(name)
            if entry and entry.get('deviation') is not None:
                lines += [f'Deviation from timm in the stored parity run: {entry["deviation"]:.1e} '
                          f'(tolerance {entry["tol"]:g}, {entry["result"]}).', '']
        return self.parse_text_to_nodes('\n'.join(lines), allow_section_headings=True)


def setup(app) -> dict:
    app.add_directive('jt-schedule-gallery', ScheduleGalleryDirective)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
