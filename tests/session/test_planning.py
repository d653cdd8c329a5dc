"""Pure planning: the one cost/latency model (list price until a fit is usable, the same figures from log rows and
from a DataFrame), grid layout by axis names and aliases, typed cell states and outcomes, and the report's tally."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kandinsky_nb import spec
from kandinsky_nb.analysis import fit_cost, fit_latency
from kandinsky_nb.errors import APIStatusError
from kandinsky_nb.planning import (
    CellJob,
    CellOutcome,
    CellRef,
    CellState,
    CostModel,
    Outcome,
    SweepReport,
    design_sweep,
    estimate,
    grid_layout,
    work_units,
)
from kandinsky_nb.session import cell_status
from kandinsky_nb.types import ImageInferenceRequest

RATE, BASE = 3.76e-4, 0.0005  # USD per megapixel-step and per image
SECONDS_PER_MP_STEP = 0.05


def logged_rows(count: int) -> list[dict[str, object]]:
    """Ok rows as the run log holds them: one per image, cost per image, latency per request."""
    rows = []
    for i in range(count):
        size = spec.SIZES[i % len(spec.SIZES)]
        steps, images = 10 + 5 * i, 1 + i % 2
        work = size.megapixels * steps
        for _ in range(images):
            rows.append(
                {
                    "status": "ok",
                    "width": size.width,
                    "height": size.height,
                    "steps": steps,
                    "number_results": images,
                    "cost_usd": RATE * work + BASE,
                    "latency_s": SECONDS_PER_MP_STEP * work * images,
                }
            )
    return rows


def request(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(positivePrompt="a red fox in snow", **fields)


def test_without_a_usable_fit_the_estimate_is_the_list_price_and_no_time():
    wanted = request(steps=30, width=1280, height=768, numberResults=2)
    alone = estimate(wanted)
    assert (alone.cost_source, alone.seconds, alone.images) == ("list price", None, 2)
    assert alone.cost_usd == pytest.approx(spec.list_price_estimate(1280, 768, 30, 2))
    two_points = CostModel.fit(logged_rows(8)[:2], fitted_to="runware")  # fewer points than a fit needs
    assert estimate(wanted, two_points) == alone


def test_a_fitted_model_prices_and_times_from_logged_rows():
    model = CostModel.fit(logged_rows(8), fitted_to="runware")
    wanted = request(steps=30, width=1280, height=768, numberResults=2)
    figures = model.estimate(wanted)
    assert figures.cost_source == f"fitted to {model.cost.points} logged runware runs"
    assert figures.cost_usd == pytest.approx((RATE * 1280 * 768 / 1e6 * 30 + BASE) * 2)
    assert figures.seconds == pytest.approx(SECONDS_PER_MP_STEP * work_units(wanted), rel=1e-6)


def test_analysis_fits_a_dataframe_to_the_same_model_the_session_uses():
    rows = logged_rows(8)
    frame = pd.DataFrame([*rows, {**rows[0], "status": "failed", "cost_usd": 9.0, "latency_s": 99.0}])
    session_model = CostModel.fit(rows)
    for analysed, fitted in ((fit_cost(frame), session_model.cost), (fit_latency(frame), session_model.latency)):
        assert analysed.points == fitted.points
        assert analysed.rate == pytest.approx(fitted.rate)
        assert analysed.base == pytest.approx(fitted.base, abs=1e-12)


def test_missing_costs_are_left_out_of_the_fit():
    rows = logged_rows(6)
    rows[0]["cost_usd"] = None
    model = CostModel.fit(rows)
    assert model.cost.points == len(rows) - 1
    assert model.latency.points == len(rows)
    assert not math.isnan(model.cost.rate)


@pytest.mark.parametrize(
    ("x", "y", "z", "expected"),
    [
        (None, None, None, ("steps", "CFGScale", ["scheduler"])),
        ("cfg", None, None, ("CFGScale", "steps", ["scheduler"])),
        ("sampler", "steps", None, ("scheduler", "steps", ["CFGScale"])),
        (None, None, "seed", ("steps", "CFGScale", ["seed"])),
        ("engine", None, [], ("engine", "steps", [])),  # a column of the log passes through by name
    ],
)
def test_grid_layout_resolves_aliases_and_fills_in_the_varied_axes(x, y, z, expected):
    assert grid_layout(["steps", "CFGScale", "scheduler"], x, y, z) == expected


def test_cell_states_come_from_the_latest_row_unless_one_is_ok():
    ok, failed, submitted, unanswered = ({"status": s} for s in ("ok", "failed", "submitted", "unanswered"))
    assert cell_status([]).state is CellState.NEW
    assert cell_status([failed, ok, failed]).state is CellState.OK
    assert cell_status([failed, submitted]).state is CellState.PENDING
    assert cell_status([unanswered]).state == "pending"  # a string enum: panels compare with plain names
    assert cell_status([submitted, failed]) == (CellState.FAILED, failed)


def test_the_report_tallies_typed_outcomes():
    design = design_sweep("a red fox in snow", name="tally", axes={"steps": [10, 20, 30, 40]})
    jobs = [CellJob(cell, cell.request, CellRef("tally", cell.key)) for cell in design.cells]
    report = SweepReport("tally")
    error = APIStatusError("busy", status_code=503, code="serverBusy")
    for outcome in (
        CellOutcome(jobs[0], Outcome.SENT),
        CellOutcome(jobs[1], Outcome.RESUMED),
        CellOutcome.failed(jobs[2], error),
        CellOutcome(jobs[3], Outcome.NOT_RUN),
    ):
        report.add(outcome)
    assert (report.ok, report.resumed, report.failed, report.not_run) == (2, 1, 1, 1)
    [failure] = report.errors
    assert failure["cell"] == {"steps": 30} and failure["task_uuid"] == jobs[2].request.taskUUID
    assert failure["error"].startswith("APIStatusError")
    assert "2 ok (1 recovered by taskUUID), 1 failed" in str(report)
