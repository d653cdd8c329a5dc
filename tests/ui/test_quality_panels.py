"""Scores in the panels, on the real demo engine: a finished sweep is scored in the background and its grid cells
captioned when the scores arrive; gallery tiles show stored scores and sort by one; the CostPanel draws the
score-against-cost frontier of a chosen sweep and metric with its one-line recommendation. Demo images are noise, so
every place that shows their scores says so."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable

import pytest

from kandinsky_nb.analysis.quality import DEMO_NOTE as DEMO_SCORES_NOTE
from kandinsky_nb.analysis.quality import pareto_frontier, recommend, score_caption
from kandinsky_nb.analysis.scoring import score_sweep
from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.ui import CostPanel, Gallery, SweepPanel
from kandinsky_nb.ui.gallery import select_rows

pytestmark = pytest.mark.local


def _eventually(condition: Callable[[], bool], seconds: float = 60) -> bool:
    """Whether ``condition`` holds within ``seconds`` (a panel redrawn from the scoring thread, just after its Future
    is done)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_a_finished_sweep_is_scored_in_the_background_and_its_cells_captioned(demo_session):
    panel = SweepPanel(demo_session)
    panel.update(prompt="a red fox", name="fox-scores", axes={"steps": "10, 12, 14", "seed": "1, 2"})
    assert panel.scores.captions == {} and "knb-cell-score" not in panel.grid.value
    task = panel.run()
    await task
    # Scoring does not hold the run up: the run has ended while scoring is still under way.
    assert not panel.running and panel.scores.sweep_id == "fox-scores" and isinstance(panel.score_task, asyncio.Task)
    await panel.score_task
    scores = panel.scores
    assert not scores.scoring and scores.error is None and scores.revision == 1
    assert scores.report.computed > 0
    # One caption per image: the 14-step cell of each seed is the reference the others are compared with.
    frame = score_sweep(demo_session, "fox-scores")
    assert set(scores.captions) == set(frame["id"])
    for row in frame.to_dict("records"):
        expected = "reference" if row["steps"] == 14 else score_caption(row, ["ssim", "psnr"])
        assert scores.captions[row["id"]] == expected
        assert expected in panel.grid.value
    assert panel.grid.value.count("knb-cell-score") == 6
    assert panel.grid.value.count(">reference<") == 2 and panel.grid.value.count("SSIM ") == 4
    # The status says what was computed, and that demo scores measure noise.
    assert "Scores of fox-scores" in panel.score_status.value and DEMO_SCORES_NOTE in panel.score_status.value
    # Stored in the run log as score columns; scoring again computes nothing.
    assert {"score_ssim", "score_psnr"} <= set(demo_session.runs.df.columns)
    # A panel opened later on the finished sweep: its Score button shows the stored scores, computing nothing.
    later = SweepPanel(demo_session)
    later.update(prompt="a red fox", name="fox-scores", axes={"steps": "10, 12, 14", "seed": "1, 2"})
    assert later.run_button.description == "All done" and not later.score_button.disabled
    later.score_button.click()
    assert later.score_button.disabled and "Scoring fox-scores" in later.score_status.value
    await later.score_task
    assert later.scores.report.computed == 0 and later.scores.captions == scores.captions
    assert not later.score_button.disabled and later.grid.value.count("knb-cell-score") == 6


def test_without_an_event_loop_the_captions_follow_from_the_scoring_thread(demo_session):
    panel = SweepPanel(demo_session)
    panel.update(prompt="a fox", name="fox-sync", axes={"steps": "10, 12"})
    assert panel.run() is None  # no running loop: the sweep ran now, scoring went to its thread
    panel.scores.future.result(timeout=120)
    # The Future's callbacks (run on the scoring thread) take the captions, then redraw the grid.
    assert _eventually(lambda: panel.scores.revision == 1)
    assert len(panel.scores.captions) == 2 and not panel.scores.scoring
    assert _eventually(lambda: "knb-cell-score" in panel.grid.value)
    assert panel.grid.value.count("knb-cell-score") == 2 and ">reference<" in panel.grid.value


def test_a_sweep_that_cannot_be_scored_says_why(demo_session):
    panel = SweepPanel(demo_session)
    panel.update(prompt="a fox", name="never-run", axes={"steps": "10, 12"})
    panel.score()  # nothing of this sweep is logged: score_sweep refuses, the panel shows it
    panel.scores.future.exception(timeout=60)
    assert _eventually(lambda: "failed" in panel.score_status.value)
    assert "Scoring never-run failed" in panel.score_status.value and "run it first" in panel.score_status.value
    assert panel.scores.error is not None and "run it first" in panel.errors.widget.value


def _scored_sweep(session, name: str = "fox-gallery") -> object:
    """A logged, scored sweep (three step counts, one seed) plus one image outside any sweep, never scored."""
    session.sweep("a red fox", name=name, steps=[10, 12, 14], seed=[3]).run(progress=False)
    session.generate("a lone fox", steps=10, seed=9)
    return score_sweep(session, name)


def test_gallery_tiles_show_stored_scores_and_sort_by_one(demo_session):
    scored = _scored_sweep(demo_session)
    gallery = Gallery(demo_session)
    logged = demo_session.runs.df.set_index("id")
    assert len(gallery.grid.children) == 4
    for tile, run_id in zip(gallery.grid.children, gallery.state.shown_ids, strict=True):
        caption = tile.children[1].value
        expected = score_caption(logged.loc[run_id])
        if run_id in set(scored["id"]):
            assert expected and "SSIM" in expected and expected in caption and "knb-tile-scores" in caption
        else:
            assert expected == "" and "knb-tile-scores" not in caption  # never scored: no empty score line
    # The sort choices are the metrics the log has scores of; choosing one sorts best first, unscored last.
    offered = [value for _, value in gallery.sort_box.options]
    assert offered[0] == "" and {"ssim", "psnr", "sharpness", "colourfulness"} <= set(offered)
    gallery.sort_box.value = "sharpness"
    assert gallery.state.sort_by == "sharpness" and gallery.state.page == 0
    by_sharpness = scored.sort_values("score_sharpness", ascending=False)["id"].tolist()
    assert gallery.state.shown_ids[:3] == by_sharpness and gallery.state.shown_ids[3] not in by_sharpness
    assert "sharpness score, best first" in gallery.summary.value
    gallery.sort_box.value = ""
    assert gallery.state.shown_ids == sorted(gallery.state.shown_ids, reverse=True)  # newest first again
    # A metric no image has: said next to the gallery, naming what is scored.
    gallery.state.sort_by = "clip_score"
    gallery.refresh_button.click()
    assert "clip_score" in gallery.errors.widget.value and "ssim" in gallery.errors.widget.value


def test_select_rows_sorts_a_page_by_score():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "status": ["ok"] * 4,
            "image_path": ["a", "b", "c", "d"],
            "score_ssim": [0.5, None, 0.9, 0.7],
        }
    )
    rows, _, total = select_rows(frame, limit=2, sort_by="ssim")
    assert rows["id"].tolist() == [3, 4] and total == 4
    rows, _, _ = select_rows(frame, limit=2, page=1, sort_by="ssim")
    assert rows["id"].tolist() == [1, 2]  # the unscored image last
    with pytest.raises(ConfigurationError, match=r"sort_by='psnr'.*scored: ssim"):
        select_rows(frame, sort_by="psnr")


def test_cost_panel_draws_the_frontier_and_the_recommendation_of_a_chosen_sweep_and_metric(demo_session):
    scored = _scored_sweep(demo_session, "fox-cost")
    demo_session.sweep("a grey wolf", name="wolf-unscored", steps=[10, 12], seed=[4]).run(progress=False)
    panel = CostPanel(demo_session)
    # The newest sweep is not scored: the panel shows the newest scored one, and offers both.
    assert panel.quality_choices.sweeps == ["wolf-unscored", "fox-cost"]
    assert panel.state.sweep is None and panel.quality_sweep.value == "fox-cost"
    assert panel.quality_metric.value == "ssim"
    assert {"ssim", "psnr", "sharpness", "colourfulness"} <= set(panel.quality_metric.options)
    expected = recommend(scored, "ssim")
    assert str(panel.quality.recommendation) == str(expected) and html.escape(str(expected)) in (
        panel.recommendation_html.value
    )
    assert "noise" in panel.recommendation_html.value  # demo scores measure noise, and the sentence says so
    frontier = pareto_frontier(scored, "ssim")
    assert panel.quality.frontier["steps"].tolist() == frontier["steps"].tolist()
    assert panel.frontier_html.value.count("</tr>") == len(frontier) + 1  # a header row and one row per setting
    assert bytes(panel.frontier_plot.value)[:4] == b"\x89PNG" and panel.frontier_plot.layout.display is None
    # Another metric: the frontier and recommendation follow (sharpness has no "same picture" level: the best).
    panel.quality_metric.value = "psnr"
    assert panel.state.metric == "psnr" and panel.quality.recommendation.metric == "psnr"
    assert panel.quality.recommendation.threshold == 30.0
    panel.quality_metric.value = "sharpness"
    assert panel.quality.recommendation.metric == "sharpness"
    assert panel.quality.recommendation.score == pytest.approx(scored.groupby("steps")["score_sharpness"].mean().max())


async def test_cost_panel_scores_an_unscored_sweep_in_the_background(demo_session):
    demo_session.sweep("a grey wolf", name="wolf", steps=[10, 12], seed=[4]).run(progress=False)
    panel = CostPanel(demo_session)
    assert panel.quality_sweep.value == "wolf" and panel.quality_metric.options == ()
    assert "no scores yet" in panel.recommendation_html.value and panel.frontier_plot.layout.display == "none"
    task = panel.score_button.click() or panel.score_task
    assert isinstance(task, asyncio.Task) and "Scoring wolf in the background" in panel.recommendation_html.value
    await task
    assert panel.quality_metric.value == "ssim" and panel.quality.recommendation is not None
    assert bytes(panel.frontier_plot.value)[:4] == b"\x89PNG"
    assert "Scores of wolf" in panel.recommendation_html.value


def test_cost_panel_over_a_dataframe_shows_stored_scores_but_cannot_score(demo_session):
    _scored_sweep(demo_session, "fox-frame")
    panel = CostPanel(demo_session.runs.df)
    assert panel.quality.recommendation is not None and panel.score_button.disabled
    with pytest.raises(ConfigurationError, match="no run log to store scores in"):
        panel.score()


async def test_gallery_scores_what_matches_its_query_sweeps_against_their_own_reference(demo_session):
    demo_session.sweep("a red fox", name="fox-unscored", steps=[10, 12, 14], seed=[3]).run(progress=False)
    demo_session.generate("a lone fox", steps=10, seed=9)
    gallery = Gallery(demo_session, query="steps < 14")  # the filter leaves out the sweep's reference image
    assert [value for _, value in gallery.sort_box.options] == [""]  # nothing scored yet: nothing to sort by
    task = gallery.score()
    assert gallery.state.scoring and gallery.score_button.disabled and "scoring the matching" in gallery.summary.value
    await task
    assert not gallery.state.scoring and not gallery.score_button.disabled
    assert "scored: " in gallery.summary.value and "for 3 images" in gallery.state.scored
    logged = demo_session.runs.df.set_index("id")
    sweep = logged[logged["sweep_id"] == "fox-unscored"]
    # The sweep was scored whole: SSIM against its 14-step image, not the most expensive image the query left.
    assert sweep["score_ssim"].notna().all() and sweep.loc[sweep["steps"] == 14, "score_ssim"].eq(1.0).all()
    assert sweep.loc[sweep["steps"] == 12, "score_ssim"].lt(1.0).all()
    loose = logged[logged["sweep_id"].isna()]
    # An image outside any sweep has no reference: only the scores that need none.
    assert loose["score_sharpness"].notna().all() and loose["score_ssim"].isna().all()
    assert {"ssim", "sharpness"} <= {value for _, value in gallery.sort_box.options}
    for tile, run_id in zip(gallery.grid.children, gallery.state.shown_ids, strict=True):
        assert score_caption(logged.loc[run_id]) in tile.children[1].value
    again = gallery.score()
    await again
    assert gallery.state.scored.startswith("0 scores computed")


def test_a_gallery_of_a_dataframe_cannot_score(demo_session):
    demo_session.generate("a lone fox", steps=10, seed=9)
    gallery = Gallery(demo_session.runs.df)
    assert gallery.score_button.disabled
    with pytest.raises(ConfigurationError, match="no run log to store scores in"):
        gallery.score()
