"""The quality notebook, executed as a reader runs it (nbval runs it too, but only checks for errors): its figures
must reach the reader as PNG images, and on the demo engine it must say that the scores measure noise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "quality_vs_cost.ipynb"


@pytest.mark.slow
def test_the_notebook_draws_png_figures_and_says_demo_scores_measure_noise(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("diffusers", reason="the demo engine needs the 'local' extra")
    monkeypatch.setenv("KANDINSKY_NB_HOME", str(tmp_path / "home"))  # the kernel inherits it
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute(env=dict(os.environ))
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) == 2  # the frontier and the convergence plot
    printed = "".join(output.get("text", "") for output in outputs)
    assert "demo weights: images are noise, so these scores measure noise" in printed
    markdown = "".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert "On the demo engine the images are noise, so the scores measure noise." in markdown
