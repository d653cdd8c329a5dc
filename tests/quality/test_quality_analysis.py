"""Quality against cost over DataFrames: which image is each one's reference, the fewest steps that reach a score,
the Pareto frontier, the one-line recommendation and the plots (pure functions: frames built here by hand)."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from kandinsky_nb.analysis.quality import (
    DEMO_NOTE,
    fewest_steps,
    pareto_frontier,
    planned_reference,
    plot_convergence,
    plot_frontier,
    recommend,
    reference_runs,
    score_caption,
    setting_scores,
)
from kandinsky_nb.errors import ConfigurationError


def frame(rows: list[dict]) -> pd.DataFrame:
    """Run-log rows with what the analysis reads; cost and latency grow with steps unless given."""
    records = []
    for index, row in enumerate(rows, start=1):
        record = {
            "id": index,
            "status": "ok",
            "sweep_id": "fox",
            "image_sha256": f"sha-{index}",
            "prompt": "a red fox",
            "negative_prompt": None,
            "seed": 1,
            "size": "1024x1024",
            "width": 1024,
            "height": 1024,
            "scheduler": "Euler",
            "CFGScale": 5.0,
            "number_results": 1,
            "demo": False,
            **row,
        }
        record.setdefault("cost_usd", 0.0002 * record["steps"])
        record.setdefault("latency_s", 0.1 * record["steps"])
        coords = {k: record[k] for k in ("CFGScale", "scheduler", "seed", "steps")}
        record.setdefault("sweep_cell", json.dumps(coords, sort_keys=True, separators=(",", ":")))
        records.append(record)
    return pd.DataFrame.from_records(records)


def convergence(curves: dict[tuple[str, float], dict[int, float]], seeds=(1,)) -> pd.DataFrame:
    """One row per (scheduler, CFG, steps, seed) with the given SSIM."""
    return frame(
        [
            {"scheduler": scheduler, "CFGScale": cfg, "steps": steps, "seed": seed, "score_ssim": ssim}
            for (scheduler, cfg), curve in curves.items()
            for steps, ssim in curve.items()
            for seed in seeds
        ]
    )


def test_the_reference_is_the_most_steps_then_the_highest_cfg_per_seed_prompt_and_size():
    rows = frame(
        [
            {"seed": 1, "steps": 10, "CFGScale": 7.0},  # 1
            {"seed": 1, "steps": 50, "CFGScale": 3.0},  # 2
            {"seed": 1, "steps": 50, "CFGScale": 7.0, "scheduler": "UniPC"},  # 3: ties with 4 on steps and CFG
            {"seed": 1, "steps": 50, "CFGScale": 7.0, "scheduler": "Euler"},  # 4: first by cell key ("Euler" < "UniPC")
            {"seed": 2, "steps": 20, "CFGScale": 7.0},  # 5: seed 2's only... until 6
            {"seed": 2, "steps": 30, "CFGScale": 3.0},  # 6
            {"seed": 1, "steps": 10, "size": "1280x768"},  # 7: a size of its own
            {"seed": 1, "steps": 50, "CFGScale": 7.0, "status": "failed", "image_sha256": None},  # 8: no image
            {"seed": 1, "steps": 10, "sweep_id": "hare"},  # 9: another sweep's
        ]
    )
    reference = reference_runs(rows)
    assert reference.to_dict() == {1: 4, 2: 4, 3: 4, 4: 4, 5: 6, 6: 6, 7: 7, 9: 9}
    # A planned reference (the sweep's largest axis values) that has not run yet: no stand-in is taken.
    planned = reference_runs(rows, planned={"steps": 50, "CFGScale": 7})
    assert planned[planned.notna()].to_dict() == {1: 4, 2: 4, 3: 4, 4: 4}
    assert planned_reference({"axes": {"steps": [10, 30, 20], "seed": [1, 2]}}) == {"steps": 30.0}
    assert planned_reference(None) == {}
    with pytest.raises(ConfigurationError, match=r"by=\['prompt', 'style'\]: the frame has no column 'style'"):
        reference_runs(rows, by=["prompt", "style"])


def test_settings_average_over_seeds_and_price_against_their_reference():
    rows = convergence({("Euler", 5.0): {10: 0.8, 50: 1.0}}, seeds=(1, 2))
    rows.loc[rows["seed"] == 2, "score_ssim"] -= 0.1  # seed 2 converges less well at 10 steps, and "0.9" at 50...
    rows.loc[(rows["seed"] == 2) & (rows["steps"] == 50), "score_ssim"] = 1.0  # ...but a reference is itself
    table = setting_scores(rows, "ssim")
    assert table[["steps", "score", "score_min", "images", "reference"]].to_dict("list") == {
        "steps": [10, 50],
        "score": [pytest.approx(0.75), 1.0],
        "score_min": [pytest.approx(0.7), 1.0],
        "images": [2, 2],
        "reference": [False, True],
    }
    assert table["cost_share"].tolist() == pytest.approx([0.2, 1.0])
    assert table["latency_share"].tolist() == pytest.approx([0.2, 1.0])


def test_missing_costs_fall_back_to_the_list_price():
    rows = convergence({("Euler", 5.0): {10: 0.8, 20: 1.0}})
    rows["cost_usd"] = float("nan")
    table = setting_scores(rows, "ssim")
    assert table["cost_usd"].tolist() == pytest.approx([0.0077 * 10 / 20, 0.0077])
    assert table["cost_share"].tolist() == pytest.approx([0.5, 1.0])
    rows["score_sharpness"] = [5.0, float("nan")]  # the reference not scored (yet): its cost still counts
    assert setting_scores(rows, "sharpness")["cost_share"].tolist() == pytest.approx([0.5])


def test_fewest_steps_that_reach_the_threshold_per_scheduler_and_cfg():
    rows = convergence(
        {
            ("Euler", 5.0): {10: 0.80, 20: 0.93, 30: 0.97, 50: 1.0},
            ("UniPC", 5.0): {10: 0.90, 20: 0.96, 30: 0.98, 50: 0.99},
            ("UniPC", 3.0): {10: 0.70, 20: 0.80, 30: 0.85, 50: 0.88},
        }
    )
    table = fewest_steps(rows, "ssim", 0.95)
    assert table[["scheduler", "CFGScale", "reached"]].to_dict("records") == [
        {"scheduler": "Euler", "CFGScale": 5.0, "reached": True},
        {"scheduler": "UniPC", "CFGScale": 3.0, "reached": False},
        {"scheduler": "UniPC", "CFGScale": 5.0, "reached": True},
    ]
    assert table["steps"].dtype == "Int64"
    assert [None if pd.isna(s) else int(s) for s in table["steps"]] == [30, None, 20]
    assert table["score"].tolist() == pytest.approx([0.97, 0.88, 0.96])  # the best seen where none reached
    assert table["cost_share"].tolist()[0] == pytest.approx(30 / 50)
    assert math.isnan(table["cost_usd"].tolist()[1])


def test_the_pareto_frontier_keeps_settings_no_cheaper_one_beats():
    rows = convergence(
        {
            ("Euler", 5.0): {10: 0.80, 20: 0.93, 30: 0.97, 50: 1.0},
            ("UniPC", 5.0): {10: 0.90, 20: 0.92, 30: 0.98},
        }
    )
    rows.loc[rows["scheduler"] == "UniPC", "cost_usd"] += 0.0001  # UniPC a little dearer per step
    front = pareto_frontier(rows, "ssim")
    assert list(zip(front["scheduler"], front["steps"], strict=True)) == [
        ("Euler", 10),
        ("UniPC", 10),
        ("Euler", 20),
        ("Euler", 30),
        ("UniPC", 30),
        ("Euler", 50),
    ]  # UniPC 20 (0.92) is dearer than Euler 20 (0.93) and scores less: off the frontier
    assert front["cost_usd"].is_monotonic_increasing and front["score"].is_monotonic_increasing
    by_latency = pareto_frontier(rows, "ssim", x="latency_s")
    assert ("UniPC", 20) not in set(zip(by_latency["scheduler"], by_latency["steps"], strict=True))
    with pytest.raises(ConfigurationError, match=r"x='price': the frontier is drawn against 'cost_usd' or 'latency_s'"):
        pareto_frontier(rows, "ssim", x="price")


def test_the_recommendation_in_one_line():
    rows = convergence(
        {
            ("Euler", 5.0): {22: 0.90, 30: 0.96, 50: 1.0},
            ("UniPC", 5.0): {22: 0.97, 30: 0.98, 50: 0.99},
        }
    )
    advice = recommend(rows, "ssim", 0.95)
    assert str(advice) == "UniPC, CFG 5, 22 steps gives 0.97 SSIM of the 50-step image at 44% of its cost"
    assert advice.setting == {"size": "1024x1024", "scheduler": "UniPC", "CFGScale": 5.0, "steps": 22}
    assert advice.reference["steps"] == 50 and advice.reached
    strict = recommend(rows, "ssim", 0.999)
    assert str(strict) == "no cheaper setting reaches 0.999 SSIM of the 50-step image: keep Euler, CFG 5, 50 steps"
    rows["score_sharpness"] = rows["steps"] * 10.0
    none = recommend(rows, "sharpness", 10_000)
    assert str(none) == (
        "no setting reaches 10,000 sharpness; the best, Euler, CFG 5, 50 steps, gives 500.0 at 100% of the cost of "
        "Euler, CFG 5, 50 steps"
    )
    rows["demo"] = True
    assert str(recommend(rows, "ssim", 0.95)).endswith(f"of its cost ({DEMO_NOTE})")


def test_a_metric_nobody_scored_says_how_to_score_it():
    rows = convergence({("Euler", 5.0): {10: 0.8}})
    with pytest.raises(
        ConfigurationError, match=r"metric='psnr': the frame has no 'score_psnr' column \(scored: ssim\); score"
    ):
        recommend(rows, "psnr")
    rows["score_ssim"] = float("nan")
    with pytest.raises(ConfigurationError, match=r"metric='ssim': no scored images in the frame"):
        recommend(rows, "ssim")


def test_score_captions_for_grid_cells_and_gallery_tiles():
    row = {"id": 3, "score_ssim": 0.934, "score_psnr": 24.07, "score_sharpness": float("nan"), "steps": 20}
    assert score_caption(row) == "SSIM 0.934 · 24.1 dB PSNR"
    assert score_caption(pd.Series(row)) == "SSIM 0.934 · 24.1 dB PSNR"
    assert score_caption(row, ["psnr"]) == "24.1 dB PSNR"
    assert score_caption({"id": 1}) == ""
    assert score_caption({"score_psnr": math.inf}) == "∞ dB PSNR"


def test_the_frontier_plot_draws_every_setting_the_frontier_and_the_reference():
    rows = convergence(
        {("Euler", 5.0): {10: 0.80, 20: 0.93, 50: 1.0}, ("UniPC", 5.0): {10: 0.90, 20: 0.85}}, seeds=(1, 2)
    )
    figure = plot_frontier(rows, "ssim", threshold=0.9)
    axes = figure.axes[0]
    front = pareto_frontier(rows, "ssim")
    frontier_line = next(line for line in axes.get_lines() if line.get_label() == "Pareto frontier")
    assert list(frontier_line.get_xdata()) == pytest.approx(front["cost_usd"].tolist())
    labels = [t.get_text() for t in axes.get_legend().get_texts()]
    assert labels == ["Euler", "UniPC", "Pareto frontier", "reference", "threshold 0.9"]
    assert sorted(t.get_text() for t in axes.texts) == ["10", "10", "20", "20", "50"]
    assert axes.get_xlabel() == "USD per image" and axes.get_ylabel() == "SSIM"
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    rows["demo"] = True
    assert DEMO_NOTE in [t.get_text() for t in plot_frontier(rows, "ssim").axes[0].texts]


def test_identical_images_are_left_off_the_psnr_chart_and_said_so():
    rows = convergence({("Euler", 5.0): {10: 0.8, 50: 1.0}})
    rows["score_psnr"] = [21.5, math.inf]
    axes = plot_frontier(rows, "psnr", x="latency_s").axes[0]
    assert "(1 identical to the reference: +∞, not drawn)" in axes.get_title()
    assert axes.get_xlabel() == "seconds per image"


def test_the_convergence_plot_has_a_line_per_scheduler_and_cfg():
    rows = convergence({("Euler", 5.0): {10: 0.8, 50: 1.0}, ("UniPC", 3.0): {10: 0.7, 50: 0.9}})
    axes = plot_convergence(rows, "ssim", threshold=0.95).axes[0]
    assert [line.get_label() for line in axes.get_lines()] == ["Euler, CFG 5", "UniPC, CFG 3", "threshold 0.95"]
    assert list(axes.get_lines()[0].get_xdata()) == [10, 50]
