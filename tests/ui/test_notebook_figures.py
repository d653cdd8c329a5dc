"""Plots show as images in a notebook, with or without ``%matplotlib inline``: the analysis builds its figures without
pyplot, and a plain Figure then prints as ``<Figure size 600x400 with 1 Axes>`` in JupyterLab. nbval (lax) runs the
notebooks but cannot see that, so here the notebook is executed and its outputs read: each plot cell must carry an
image/png output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.local

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "cost_analysis.ipynb"


def test_analysis_figures_format_as_png_without_pyplot(demo_session):
    import sys

    from IPython.core.formatters import DisplayFormatter

    from kandinsky_nb import analysis

    for steps in (10, 12, 14):
        demo_session.generate("a red fox", steps=steps, width=1024, height=1024)
    frame = demo_session.runs.df
    for figure in (analysis.plot_cost(frame), analysis.plot_latency(frame)):
        data, _ = DisplayFormatter().format(figure)  # what a kernel sends for a cell's value
        assert data.get("image/png", b"")[:4] == b"\x89PNG", sorted(data)
    assert "matplotlib.pyplot" not in sys.modules  # no global state was needed for that


@pytest.mark.slow
def test_the_cost_notebook_shows_its_plots_as_images(tmp_path, demo_weights, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    home = tmp_path / "home"
    shutil.copytree(demo_weights, home / "demo-weights")  # built once per test session, not again in the kernel
    monkeypatch.setenv("KANDINSKY_NB_HOME", str(home))
    monkeypatch.setenv("KANDINSKY_NB_ENGINE", "demo")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    plot_cells = [cell for cell in notebook.cells if cell.cell_type == "code" and ".plot_" in cell.source]
    assert len(plot_cells) >= 2
    for cell in plot_cells:
        kinds = [sorted(output.get("data", {})) for output in cell.outputs]
        assert any("image/png" in kind for kind in kinds), (cell.source, json.dumps(kinds))
