"""The sweep, runs and demo commands, as a user types them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from sweep_testkit import KEY, PricedEngine, served

from kandinsky_nb.analysis.grid import GRID_KEY
from kandinsky_nb.cli import main


@pytest.fixture
def cloud(monkeypatch):
    with served(PricedEngine()) as (url, state):
        monkeypatch.setenv("RUNWARE_API_KEY", KEY)
        monkeypatch.setenv("RUNWARE_BASE_URL", url)
        yield state


def test_sweep_command_runs_draws_and_resumes(cloud, tmp_path):
    runner = CliRunner()
    arguments = ["sweep", "a red fox in snow", "--steps", "10-30 (+10)", "--cfg", "3,7", "--scheduler", "Euler,UniPC"]
    arguments += ["--seed", "1", "--name", "cli", "--budget", "1.0", "--out", str(tmp_path / "out")]
    first = runner.invoke(main, arguments)
    assert first.exit_code == 0, first.output
    assert "12 ok" in first.output
    with Image.open(tmp_path / "out" / "cli-grid.png") as grid:
        layout = json.loads(grid.text[GRID_KEY])
    assert (layout["x"], layout["y"], layout["z"]) == ("steps", "CFGScale", ["scheduler"])
    rows = pd.read_csv(tmp_path / "out" / "cli.csv")
    assert len(rows) == 12 and set(rows["status"]) == {"ok"}
    again = runner.invoke(main, arguments)
    assert again.exit_code == 0 and "12 already done" in again.output
    assert sum(cloud.generations.values()) == 12
    assert KEY not in first.output + again.output


def test_sweep_command_refuses_past_the_budget(cloud, tmp_path):
    result = CliRunner().invoke(
        main, ["sweep", "a fox", "--steps", "10-50 (+10)", "--budget", "0.01", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "Budget exceeded" in result.output and "nothing was sent" in result.output
    assert not cloud.generations


def test_sweep_estimate_sends_nothing(cloud, tmp_path):
    result = CliRunner().invoke(main, ["sweep", "a fox", "--steps", "10,20", "--seed", "1-3", "--estimate"])
    assert result.exit_code == 0
    assert "6 cells, 6 images" in result.output
    assert not cloud.generations


def test_runs_list_show_export(cloud, tmp_path):
    runner = CliRunner()
    assert (
        runner.invoke(main, ["sweep", "a fox", "--steps", "10,20", "--name", "r", "--out", str(tmp_path)]).exit_code
        == 0
    )
    listed = runner.invoke(main, ["runs", "list", "--sweep", "r"])
    assert listed.exit_code == 0 and "2 rows" in listed.output
    shown = runner.invoke(main, ["runs", "show", "1"])
    assert shown.exit_code == 0
    assert json.loads(shown.output)["request_json"]["positivePrompt"] == "a fox"
    for fmt in ("parquet", "csv"):
        path = tmp_path / f"runs.{fmt}"
        exported = runner.invoke(main, ["runs", "export", "--format", fmt, str(path)])
        assert exported.exit_code == 0 and "2 rows" in exported.output
        frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
        assert list(frame["steps"]) == [10, 20]
    missing = runner.invoke(main, ["runs", "show", "9999"])
    assert missing.exit_code == 1 and "no run with id" in missing.output


@pytest.mark.local
def test_demo_command_runs_offline_and_says_the_images_are_noise(demo_weights, tmp_path, monkeypatch):
    home = tmp_path / "home"
    # Reuse the session's demo weights instead of building them again in the new home.
    (home).mkdir()
    (home / "demo-weights").symlink_to(demo_weights, target_is_directory=True)
    result = CliRunner().invoke(main, ["demo", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "images are noise" in result.output
    assert "8 ok" in result.output
    grid = home / "demo" / "demo-grid.png"
    assert grid.is_file() and str(grid) in result.output
    with Image.open(grid) as image:
        assert json.loads(image.text[GRID_KEY])["demo"] is True
    again = CliRunner().invoke(main, ["demo", "--home", str(home)])
    assert "8 already done" in again.output
