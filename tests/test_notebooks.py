"""Every notebook in notebooks/ executes (nbclient) and writes its figures, so the tour never rots.

Figures go to ``$JAXOPT_TIMM_NB_OUT`` (here a temporary directory); each notebook's
expected files must exist and be non-empty PNGs. A notebook added to the folder is
executed without anyone remembering to; give its figures an entry in FIGURES.
"""
import pathlib
import time

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / 'notebooks'
FIGURES = {
    'schedule_gallery.ipynb': ['schedule_cosine.png', 'schedule_tanh_step_poly.png', 'schedule_wsd_rsqrt.png',
                               'schedule_noise.png', 'schedule_onecycle_constant_plateau.png',
                               'schedule_epoch_vs_update.png'],
    'optimizer_tour.ipynb': ['tour_trajectories.png', 'tour_composition.png'],
    'flax_training.ipynb': ['flax_training.png'],
    'continue_timm_run.ipynb': ['continue_timm_run.png'],
}
PATHS = sorted(NOTEBOOKS.glob('*.ipynb'))


def test_every_notebook_has_figures_listed():
    assert PATHS, 'no notebooks found'
    assert sorted(p.name for p in PATHS) == sorted(FIGURES)


@pytest.mark.parametrize('path', PATHS, ids=[p.stem for p in PATHS])
def test_notebook_executes_and_writes_figures(path, tmp_path, monkeypatch):
    out = tmp_path / 'figures'
    monkeypatch.setenv('JAXOPT_TIMM_NB_OUT', str(out))
    monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get('outputs') for c in nb.cells if c.cell_type == 'code'), 'commit notebooks without outputs'
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': str(NOTEBOOKS)}}).execute()
    elapsed = time.perf_counter() - t0
    print(f'{path.name}: {elapsed:.1f}s')
    for name in FIGURES.get(path.name, []):
        fig = out / name
        assert fig.is_file(), f'{path.name} did not write {name}'
        data = fig.read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 2000, name
    errors = [o for c in nb.cells for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors
