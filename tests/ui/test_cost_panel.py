"""CostPanel over a real demo-engine run log: totals, spend by any grouping, the fitted model, plots, and local GPU
cost against the cloud list price; an empty log and a bad rate are shown, not raised."""

from __future__ import annotations

import pytest

from kandinsky_nb.ui import CostPanel, GeneratePanel

pytestmark = pytest.mark.local


def test_an_empty_log_says_so(demo_session):
    panel = CostPanel(demo_session)
    assert "No runs logged yet" in panel.summary_html.value and panel.spend is None
    # No empty (broken-looking) images before there is something to plot.
    assert panel.cost_plot.layout.display == panel.latency_plot.layout.display == "none"


def test_spend_model_plots_and_local_vs_cloud(demo_session):
    generate = GeneratePanel(demo_session)
    for steps in (10, 14, 18):
        generate.update(positivePrompt="a red fox", steps=steps, size="1K (~20:9)")
        generate.generate()
    panel = CostPanel(demo_session)
    logged = demo_session.runs.df
    assert panel.summary["images"] == 3
    assert panel.summary["spent_usd"] == pytest.approx(logged["cost_usd"].sum())
    assert "price model" in panel.summary_html.value and "R²" in panel.summary_html.value
    assert "demo" in panel.summary_html.value
    assert bytes(panel.cost_plot.value)[:4] == bytes(panel.latency_plot.value)[:4] == b"\x89PNG"
    assert panel.cost_plot.layout.display is None

    panel.by.value = "steps"
    assert sorted(panel.spend.index) == [10, 14, 18]
    assert panel.spend.loc[14, "spent_usd"] == pytest.approx(logged.loc[logged["steps"] == 14, "cost_usd"].sum())

    assert len(panel.comparison) == 3 and "list price" in panel.comparison_html.value
    panel.gpu_rate.value = "3600"  # $1 per GPU-second: local cost becomes the measured seconds
    seconds = logged["gpu_seconds"].fillna(logged["latency_s"]).tolist()
    assert panel.comparison["local_usd"].tolist() == pytest.approx(seconds)
    panel.gpu_rate.value = "lots"
    assert "GPU $/hour must be a number" in panel.errors.widget.value


def test_a_dataframe_slice_is_enough(demo_session):
    generate = GeneratePanel(demo_session)
    generate.update(positivePrompt="a red fox", steps=10)
    generate.generate()
    panel = CostPanel(demo_session.runs.df)
    assert panel.session is None and panel.summary["images"] == 1
