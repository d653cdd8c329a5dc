"""The IPython magics in a real in-process InteractiveShell, on the demo engine: ``%load_ext kandinsky_nb``,
``%%knb generate``, ``%knb runs``/``cost``/``status``/``show``/``code``, ``%%knb sweep``, and usage errors."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.local  # generation runs on the demo engine

IPython = pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402


@pytest.fixture
def shell(tmp_path, monkeypatch, demo_weights):
    home = tmp_path / "magics-home"
    shutil.copytree(demo_weights, home / "demo-weights")
    monkeypatch.setenv("KANDINSKY_NB_HOME", str(home))
    monkeypatch.setenv("KANDINSKY_NB_ENGINE", "demo")
    InteractiveShell.clear_instance()
    ipython = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "kandinsky_nb")
    yield ipython
    magics = ipython.magics_manager.registry.get("KandinskyMagics")
    if magics is not None and magics.session is not None:
        magics.session.close()
    InteractiveShell.clear_instance()


def _digest(generation) -> str:
    return hashlib.sha256(generation.images[0].data).hexdigest()


def _pixels(data: bytes) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def test_load_ext_registers_the_line_and_cell_magic(shell):
    magics = shell.magics_manager.magics
    assert "knb" in magics["line"] and "knb" in magics["cell"]


def test_reading_magics_work_before_the_log_exists(shell):
    runs = shell.run_line_magic("knb", "runs")
    assert runs.empty and "prompt" in runs.columns
    assert shell.run_line_magic("knb", "cost").rows["all"]["runs"] == 0
    status = shell.run_line_magic("knb", "status")
    assert status["exists"] is False
    assert not (Path(status["db"])).exists()  # reading never creates the log


def test_generate_takes_the_cell_as_prompt_and_logs_the_run(shell):
    generation = shell.run_cell_magic("knb", "generate --steps 10 --seed 7 --size 1024x1024", "a red fox in snow\n")
    assert generation.request.positivePrompt == "a red fox in snow"
    assert generation.request.steps == 10 and generation.request.seed == 7
    assert (generation.request.width, generation.request.height) == (1024, 1024)
    again = shell.run_cell_magic("knb", "generate --steps 10 --seed 7 --size 1024x1024", "a red fox in snow")
    assert _digest(again) == _digest(generation)  # seeded: the same pixels
    runs = shell.run_line_magic("knb", "runs --last 5")
    assert list(runs["prompt"]) == ["a red fox in snow"] * 2 and list(runs["status"]) == ["ok", "ok"]
    assert runs.index[0] > runs.index[1]  # newest first


def test_code_puts_a_cell_that_regenerates_the_same_pixels_next(shell):
    original = shell.run_cell_magic("knb", "generate --steps 10 --seed 11", "a lighthouse at dusk")
    run_id = int(shell.run_line_magic("knb", "runs --last 1").index[0])
    shell.run_line_magic("knb", f"code {run_id}")
    code = shell.rl_next_input
    assert f"Reproduces run {run_id}" in code
    result = shell.run_cell(code)
    assert result.success, result.error_in_exec
    assert _digest(shell.user_ns["generation"]) == _digest(original)
    assert shell.run_line_magic("knb", "runs").shape[0] == 2  # the reproduction is a new run, the original kept


def test_cost_and_status_are_rich_with_text_fallbacks(shell):
    shell.run_cell_magic("knb", "generate --steps 10 --seed 1", "a cat")
    cost = shell.run_line_magic("knb", "cost")
    assert cost.rows["all"]["runs"] == cost.rows["today"]["runs"] == cost.rows["session"]["runs"] == 1
    assert "session" in repr(cost) and "<table" in cost._repr_html_()
    status = shell.run_line_magic("knb", "status")
    assert status["exists"] and status["runs"] == 1 and status["schema"]["current"]


def test_show_returns_the_image(shell):
    generation = shell.run_cell_magic("knb", "generate --steps 10 --seed 2", "a cat")
    run_id = int(shell.run_line_magic("knb", "runs --last 1").index[0])
    image = shell.run_line_magic("knb", f"show {run_id}")
    # The logged file: the generated pixels, with the request's parameters embedded in its metadata.
    assert _pixels(image.data) == _pixels(generation.images[0].data)


def test_sweep_plans_then_runs_with_the_cell_as_prompt(shell):
    estimate = shell.run_cell_magic("knb", "sweep cats steps=10,12 seed=1,2", "a sweep of a cat")
    assert estimate.cells == 4 and estimate.cells_to_run == 4
    report = shell.run_cell_magic("knb", "sweep cats steps=10,12 seed=1,2 --run", "a sweep of a cat")
    assert report.ok == 4 and report.failed == 0
    runs = shell.run_line_magic("knb", "runs --sweep cats")
    assert len(runs) == 4 and set(runs["steps"]) == {10, 12}


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("runs --status done", None, "status='done'"),
        ("show 999", None, "no image"),
        ("generate --steps 10", None, "the cell body is the prompt"),
        ("sweep cats steps", "a cat", "must be field=values"),
        ("generate --size big", "a cat", "WIDTHxHEIGHT"),
        ("explode", None, "invalid choice"),
    ],
)
def test_usage_errors_say_what_to_write(shell, line, cell, message):
    with pytest.raises(UsageError, match=message):
        if cell is None:
            shell.run_line_magic("knb", line)
        else:
            shell.run_cell_magic("knb", line, cell)
