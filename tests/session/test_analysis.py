"""Contact sheets put each run at its axes' values; the cost fit recovers a known price; spend and plots."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image
from sweep_testkit import colour_of, generation

from kandinsky_nb import spec
from kandinsky_nb.analysis import (
    contact_sheet,
    cost_summary,
    fit_cost,
    local_vs_cloud,
    plot_cost,
    plot_latency,
    spend_by,
)
from kandinsky_nb.analysis.grid import DEMO_CAPTION, GRID_KEY
from kandinsky_nb.errors import APIStatusError, SweepError
from kandinsky_nb.runlog import RunLog
from kandinsky_nb.types import ImageInferenceRequest

STEPS, CFGS, SCHEDULERS = [10, 20, 30], [3.0, 7.5], ["Euler", "UniPC"]


def seed_for(steps: int, cfg: float, scheduler: str) -> int:
    return STEPS.index(steps) * 100 + CFGS.index(cfg) * 10 + SCHEDULERS.index(scheduler)


@pytest.fixture
def log(tmp_path):
    """A log with one run per (steps, CFG, scheduler), each image a solid colour derived from its seed, and the
    (30, 7.5, UniPC) cell failed."""
    log = RunLog(tmp_path)
    for steps in STEPS:
        for cfg in CFGS:
            for scheduler in SCHEDULERS:
                seed = seed_for(steps, cfg, scheduler)
                request = ImageInferenceRequest(
                    positivePrompt="a fox", steps=steps, CFGScale=cfg, scheduler=scheduler, seed=seed
                )
                if (steps, cfg, scheduler) == (30, 7.5, "UniPC"):
                    log.record_failure(
                        request,
                        APIStatusError("busy", status_code=503, code="serverBusy"),
                        engine="runware",
                        demo=False,
                    )
                else:
                    log.record_generation(generation(request))
    yield log
    log.close()


def test_each_image_is_placed_at_its_axes_values(log, tmp_path):
    frame = log.df
    sheet = contact_sheet(frame, x="steps", y="CFGScale", z="scheduler", cell=48)
    assert len(sheet.placements) == len(STEPS) * len(CFGS) * len(SCHEDULERS)
    by_id = frame.set_index("id")
    for placed in sheet.placements:
        (scheduler,) = placed.z
        if (placed.x, placed.y, scheduler) == (30, 7.5, "UniPC"):
            assert placed.status == "failed" and placed.error_code == "serverBusy"
            continue
        row = by_id.loc[placed.row_id]
        assert (row["steps"], row["CFGScale"], row["scheduler"]) == (placed.x, placed.y, scheduler)
        # The pixels in the cell's box are that run's image (solid colour from its seed).
        x0, y0, x1, y1 = placed.box
        centre = sheet.image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))
        assert centre == colour_of(seed_for(placed.x, placed.y, scheduler))
    failed = sheet.placement(x=30, y=7.5, z=("UniPC",))
    x0, y0, x1, y1 = failed.box
    assert sheet.image.getpixel((x0 + 2, y0 + 2)) == (200, 200, 200)  # the placeholder keeps the grid aligned

    path = sheet.save(tmp_path / "grid.png")
    with Image.open(path) as saved:
        metadata = json.loads(saved.text[GRID_KEY])
    assert (metadata["x"], metadata["y"], metadata["z"]) == ("steps", "CFGScale", ["scheduler"])
    assert metadata["values"]["steps"] == STEPS
    assert len(metadata["placements"]) == 12


def test_grid_from_a_subset_with_aliases_and_orders(log):
    frame = log.df
    subset = frame[frame["scheduler"] == "Euler"]
    sheet = contact_sheet(subset, x="cfg", y="steps", orders={"steps": [30, 10]}, cell=40)
    assert sheet.values["steps"] == [30, 10]
    assert [p.y for p in sheet.placements] == [30, 30, 10, 10]
    assert all(p.status == "ok" for p in sheet.placements)
    assert max(p.box[3] for p in sheet.placements) <= sheet.image.height


def test_missing_cells_and_unknown_axes(log):
    frame = log.df
    sheet = contact_sheet(frame[frame["steps"] != 20], x="steps", y="CFGScale", orders={"steps": STEPS}, cell=40)
    assert {p.status for p in sheet.placements if p.x == 20} == {"missing"}
    with pytest.raises(SweepError, match="no axis 'sampler_name'"):
        contact_sheet(frame, x="sampler_name")


def test_demo_runs_are_captioned(tmp_path):
    log = RunLog(tmp_path)
    made = generation(ImageInferenceRequest(positivePrompt="a fox", seed=1), engine="local")
    made.demo = True
    log.record_generation(made)
    sheet = contact_sheet(log.df, x="seed", cell=40)
    assert sheet.metadata["demo"] is True
    assert DEMO_CAPTION == "demo weights: images are noise"
    # The caption is drawn in its red below the grid.
    bottom = sheet.image.crop((0, sheet.image.height - 30, sheet.image.width, sheet.image.height))
    assert (180, 0, 0) in {colour for _, colour in bottom.getcolors(maxcolors=100000)}


def synthetic_costs(tmp_path, rate: float, base: float = 0.0, noise: float = 0.0):
    log = RunLog(tmp_path)
    rng = random.Random(5)
    for steps in (10, 20, 28, 35, 50):
        for size in spec.SIZES[:4]:
            request = ImageInferenceRequest(
                positivePrompt="a fox", steps=steps, width=size.width, height=size.height, seed=steps
            )
            cost = (rate * size.megapixels * steps + base) * (1 + rng.uniform(-noise, noise))
            log.record_generation(generation(request, cost=cost))
    return log


def test_cost_fit_recovers_a_known_linear_price(tmp_path):
    rate = 3.76e-4  # USD per megapixel-step, the rate the model page's examples imply
    model = fit_cost(synthetic_costs(tmp_path, rate, base=0.0005).df)
    assert model.rate == pytest.approx(rate, rel=1e-9)
    assert model.base == pytest.approx(0.0005, rel=1e-6)
    assert model.r2 == pytest.approx(1.0)
    assert model.mape < 1e-9
    assert model.points == 20
    assert model.predict(1024, 1024, 20) == pytest.approx(rate * 1.048576 * 20 + 0.0005)


def test_cost_fit_with_noise_reports_its_error(tmp_path):
    model = fit_cost(synthetic_costs(tmp_path, 3.76e-4, noise=0.03).df, intercept=False)
    assert model.rate == pytest.approx(3.76e-4, rel=0.02)
    assert 0.9 < model.r2 < 1.0
    assert 0.0 < model.mape < 0.03
    assert "R²" in model.describe() and "MAPE" in model.describe()


def test_spend_summaries_and_plots(tmp_path):
    log = synthetic_costs(tmp_path, 3.76e-4)
    frame = log.df
    by_steps = spend_by(frame, "steps")
    assert by_steps.loc[50, "images"] == 4
    assert by_steps["spent_usd"].sum() == pytest.approx(frame["cost_usd"].sum())
    assert by_steps.loc[10, "usd_per_megapixel"] == pytest.approx(3.76e-4 * 10)
    assert set(spend_by(frame, "day")["images"]) == {20}
    summary = cost_summary(frame)
    assert summary["images"] == 20 and summary["fits"]["runware"].r2 == pytest.approx(1.0)
    # The fitted rate is a little above the list price's (0.0077 USD for 1024x1024 at 20 steps).
    assert summary["spent_vs_list"] == pytest.approx(3.76e-4 / (0.0077 / (1.048576 * 20)), rel=1e-6)
    for figure in (plot_cost(frame), plot_latency(frame, x="megapixels")):
        assert figure.axes and figure.axes[0].collections  # scatter points were drawn


def test_local_cost_compares_with_cloud_list_price(tmp_path):
    log = RunLog(tmp_path)
    request = ImageInferenceRequest(positivePrompt="a fox", steps=20, seed=1)
    made = generation(request, cost=0.002, engine="local")
    made.details["gpu_seconds"] = 3.6
    log.record_generation(made)
    table = local_vs_cloud(log.df, gpu_hourly_usd=1.0)
    assert table["local_usd"].iloc[0] == pytest.approx(0.001)  # 3.6 s at $1/h
    assert table["cloud_usd"].iloc[0] == pytest.approx(spec.list_price_estimate(1024, 1024, 20))
