"""SweepPanel on the real demo engine: the form becomes a plan with cells, cost and time before anything runs; a run
fills the grid and logs every cell; cancel stops starting cells; running again resumes only what is left."""

from __future__ import annotations

import asyncio

import pytest

from kandinsky_nb import spec
from kandinsky_nb.ui import GeneratePanel, SweepPanel, SweepState, sweep_arguments

pytestmark = pytest.mark.local


def test_sweep_arguments_pass_range_text_and_choices_through():
    state = SweepState(axes={"steps": "10-30 (+10)", "seed": ""}, schedulers=["Euler", "UniPC"], sizes=["1K (5:3)"])
    assert sweep_arguments(state) == {"steps": "10-30 (+10)", "scheduler": ["Euler", "UniPC"], "size": ["1280x768"]}


def test_plan_cost_and_budget_are_shown_before_running(demo_session):
    panel = SweepPanel(demo_session)
    assert panel.plan is None and panel.run_button.disabled and "prompt" in panel.problem_labels["prompt"].value
    panel.prompt.value = "a red fox"
    panel.axis_texts["steps"].value = "10-12 (+2)"
    panel.axis_texts["CFGScale"].value = "3, 5, 7"
    assert len(panel.plan) == 6 and panel.estimate.cells == 6
    expected = sum(spec.list_price_estimate(1024, 1024, steps) for steps in (10, 12) for _ in range(3))
    assert panel.estimate.cost_usd == pytest.approx(expected)
    assert "<b>6</b> cells" in panel.summary.value and "no cap" in panel.summary.value
    assert not panel.run_button.disabled
    panel.axis_texts["steps"].value = "5-7"  # below the documented minimum: the problem is shown, Run disabled
    assert panel.plan is None and panel.run_button.disabled and "steps" in panel.problem_labels["steps"].value


def test_a_plan_over_budget_cannot_run(demo_backend, tmp_path):
    from kandinsky_nb.session import Session

    session = Session(engine=demo_backend, home=tmp_path / "home", budget=1e-6)
    try:
        panel = SweepPanel(session)
        panel.update(prompt="a fox", axes={"steps": "10, 20"})
        assert panel.plan is not None and panel.run_button.disabled and "not enough" in panel.summary.value
    finally:
        session.runs.close()


async def test_run_fills_the_grid_and_a_second_run_resumes_nothing(demo_session):
    panel = SweepPanel(demo_session)
    panel.update(prompt="a red fox", name="fox-grid", axes={"steps": "10, 11", "CFGScale": "3, 5"})
    assert panel.grid.value.count("knb-cell-new") == 4
    task = panel.run()
    assert panel.running and panel.run_button.disabled and not panel.cancel_button.disabled
    report = await task
    assert (report.ok, report.failed) == (4, 0)
    assert panel.progress.value == 4 and panel.progress.bar_style == "success"
    assert panel.grid.value.count("<img") == 4
    rows = demo_session.runs.df
    assert sorted(rows["sweep_id"].unique()) == ["fox-grid"] and len(rows) == 4
    assert panel.sheet_image.layout.display == "none"  # no empty (broken-looking) image before there is a sheet
    panel.sheet_button.click()
    # Drawing reads every image: it runs off the event loop and says so meanwhile.
    assert isinstance(panel.sheet_task, asyncio.Task) and not panel.sheet_task.done()
    assert panel.sheet_button.disabled and panel.sheet_button.description == "Drawing…"
    assert "Drawing the contact sheet of 4 cells" in panel.sheet_status.value
    await panel.sheet_task
    assert not panel.sheet_button.disabled and panel.sheet_status.value == ""
    assert bytes(panel.sheet_image.value)[:4] == b"\x89PNG" and panel.sheet.image.width > 0
    assert panel.sheet_image.layout.display is None
    assert panel.estimate.cells_to_run == 0  # everything done: a re-run resumes nothing, and the panel says so
    assert panel.run_button.disabled and panel.run_button.description == "All done"
    assert "nothing to run" in panel.summary.value
    again = await panel.run()
    assert (again.ok, again.skipped_done) == (0, 4)


async def test_cancel_leaves_the_rest_for_a_resume(demo_session):
    panel = SweepPanel(demo_session)
    panel.update(prompt="a fox", name="fox-cancel", axes={"seed": "1-4"}, concurrency=1)
    task = panel.run()
    panel.cancel()  # clicked at once, before the sweep's first cell: still honoured
    report = await task
    assert report.ok < 4 and report.not_run > 0
    left = panel.estimate.cells_to_run
    assert left == 4 - report.ok
    resumed = await panel.run()
    assert resumed.ok == left and resumed.skipped_done == report.ok


async def test_sweep_starts_from_a_generate_panel(demo_session):
    base = GeneratePanel(demo_session)
    base.update(positivePrompt="a blue whale", size="1K (~20:9)", steps=10)
    panel = SweepPanel(demo_session, base=base)
    panel.update(axes={"CFGScale": "4, 6"})
    assert [cell.request.width for cell in panel.plan] == [1408, 1408]
    assert all(cell.request.positivePrompt == "a blue whale" for cell in panel.plan)


def test_prompts_one_per_line_become_an_axis(demo_session):
    panel = SweepPanel(demo_session)
    panel.prompts.value = "a red fox\n\na blue whale\n"
    panel.axis_texts["seed"].value = "1, 2"
    prompts = sorted(cell.request.positivePrompt for cell in panel.plan)
    assert prompts == ["a blue whale"] * 2 + ["a red fox"] * 2
    assert "positivePrompt [2]" in panel.summary.value


async def test_every_problem_shows_next_to_its_field_and_goes_when_fixed(demo_session):
    panel = SweepPanel(demo_session)
    panel.update(prompt="a red fox", name="fox-fields", axes={"steps": "10, 11"})
    await panel.run()
    assert panel.grid.value.count("<img") == 2
    await panel.draw_contact_sheet()
    assert panel.sheet_image.layout.display is None
    # Two bad fields at once: each problem under its own field, none in the general line.
    panel.axis_texts["steps"].value = "5-7"
    panel.axis_texts["CFGScale"].value = "3, lots"
    assert "5" in panel.problem_labels["steps"].value and "steps" in panel.problem_labels["steps"].value
    assert "lots" in panel.problem_labels["CFGScale"].value
    assert panel.problem_labels["general"].value == "" and panel.problem_labels["prompt"].value == ""
    assert panel.plan is None and panel.run_button.disabled
    # The grid and sheet of the last valid sweep are not left on screen under an invalid form.
    assert panel.grid.value == "" and panel.sheet_image.layout.display == "none"
    # Fixing one field clears its problem at once (edits apply as typed), the other stays.
    assert panel.axis_texts["steps"].continuous_update
    panel.axis_texts["steps"].value = "10, 11"
    assert panel.problem_labels["steps"].value == "" and "lots" in panel.problem_labels["CFGScale"].value
    panel.axis_texts["CFGScale"].value = ""
    assert panel.plan is not None and panel.grid.value.count("<img") == 2


def test_an_engine_refusal_shows_under_the_scheduler_field(demo_session):
    panel = SweepPanel(demo_session)
    panel.update(prompt="a red fox", schedulers=["Euler", "DDIM"])  # DDIM: not on the local engine
    assert panel.plan is None and "DDIM" in panel.problem_labels["scheduler"].value
    assert panel.problem_labels["general"].value == ""


def test_running_a_finished_sweep_again_draws_no_empty_bar(demo_session, capsys):
    plan = demo_session.sweep("a fox", name="fox-again", seed=[1, 2])
    plan.run(progress=True)
    assert "2/2" in capsys.readouterr().err  # the first run shows its bar
    report = plan.run(progress=True)
    # No bar at all (in a notebook tqdm draws an empty "0/0" widget; in a terminal "0cell [00:00, ?cell/s]").
    assert report.skipped_done == 2 and "sweep fox-again" not in capsys.readouterr().err
