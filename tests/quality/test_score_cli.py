"""``kandinsky-nb score SWEEP`` as a user types it, on a run log with a logged sweep."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import Image
from quality_testkit import grid, log_cells

from kandinsky_nb.analysis.quality import recommend
from kandinsky_nb.analysis.scoring import score_sweep
from kandinsky_nb.cli import main

CELLS = grid(scheduler=["Euler", "UniPC"], steps=[10, 20, 30, 40, 50], seed=[1, 2])


def test_score_prints_the_fewest_steps_the_frontier_and_a_recommendation(runs, tmp_path):
    log_cells(runs, "fox", CELLS)
    home = str(runs.home)
    result = CliRunner().invoke(
        main, ["score", "fox", "--home", home, "--threshold", "0.6", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert f"sweep 'fox' in {runs.path}: 80 scores computed, 0 already stored" in result.output
    assert "fewest steps reaching the threshold (ssim):" in result.output
    assert "Pareto frontier of ssim against cost_usd:" in result.output
    advice = str(recommend(score_sweep(runs, "fox"), "ssim", 0.6))
    assert "SSIM of the 50-step image at" in advice
    assert advice in result.output
    with Image.open(tmp_path / "out" / "fox-ssim-frontier.png") as image:
        assert image.format == "PNG"
    assert (tmp_path / "out" / "fox-scores.csv").read_text().count("\n") == 21  # header + 20 rows
    again = CliRunner().invoke(main, ["score", "fox", "--home", home, "--scorer", "ssim", "--against", "latency_s"])
    assert again.exit_code == 0, again.output
    assert "0 scores computed, 20 already stored" in again.output
    assert "Pareto frontier of ssim against latency_s:" in again.output


def test_score_refuses_what_it_cannot_do_and_says_what_to_do(runs):
    home = str(runs.home)
    missing = CliRunner().invoke(main, ["score", "nope", "--home", home])
    assert missing.exit_code == 1 and "sweep_id='nope': no runs of that sweep" in missing.output
    log_cells(runs, "fox", CELLS[:2])
    unscored = CliRunner().invoke(main, ["score", "fox", "--home", home, "--metric", "clip_score"])
    assert unscored.exit_code == 2 and "'clip_score' is not among the scorers" in unscored.output
    no_threshold = CliRunner().invoke(main, ["score", "fox", "--home", home, "--metric", "sharpness"])
    assert no_threshold.exit_code == 1 and "'sharpness' has no default threshold" in no_threshold.output
    unknown = CliRunner().invoke(main, ["score", "fox", "--home", home, "--scorer", "ssim,fid"])
    assert unknown.exit_code == 1 and "scorer='fid': not a download-free scorer" in unknown.output


def test_runs_list_shows_the_stored_scores(runs):
    log_cells(runs, "fox", CELLS[:2])
    home = str(runs.home)
    before = CliRunner().invoke(main, ["runs", "list", "--home", home])
    assert before.exit_code == 0 and "score_" not in before.output  # no column for a metric nobody stored
    CliRunner().invoke(main, ["score", "fox", "--home", home, "--scorer", "ssim,sharpness"])
    after = CliRunner().invoke(main, ["runs", "list", "--home", home, "--sweep", "fox"])
    assert after.exit_code == 0
    header = after.output.splitlines()[1].split()
    assert header[-2:] == ["score_sharpness", "score_ssim"]
