"""SweepPanel on the real demo engine: choose and swap which axes go across, down and per block (grid and contact
sheet follow); re-run one failed or chosen cell (a new run of the same cell, a new taskUUID); export the contact
sheet with the sweep embedded and read it back."""

from __future__ import annotations

import json

import pytest

from kandinsky_nb.analysis.grid import read_grid_metadata
from kandinsky_nb.backends.base import Backend
from kandinsky_nb.errors import BackendError, SweepError
from kandinsky_nb.ui import SweepPanel
from kandinsky_nb.ui.sweep import sweep_grid_axes

pytestmark = pytest.mark.local


class FailingOnce(Backend):
    """The demo engine, except that the first request with seed ``fail_seed`` fails as a broken GPU run would."""

    def __init__(self, inner: Backend, fail_seed: int) -> None:
        self.inner, self.fail_seed, self.failed = inner, fail_seed, 0
        self.name, self.demo = inner.name, inner.demo

    def check(self, request):
        self.inner.check(request)

    def generate(self, request):
        if request.seed == self.fail_seed and not self.failed:
            self.failed += 1
            raise BackendError(f"seed={request.seed}: the engine failed once (test)")
        return self.inner.generate(request)

    def close(self) -> None:  # the demo engine is shared by the whole test session: leave it open
        pass


def _panel(session, **axes: str) -> SweepPanel:
    panel = SweepPanel(session)
    panel.update(prompt="a red fox", axes=axes)
    assert panel.plan is not None, panel.problems
    return panel


def test_the_layout_resolves_a_choice_and_keeps_every_axis_once():
    varied = ["steps", "CFGScale", "seed"]
    assert sweep_grid_axes(varied) == ("steps", "CFGScale", ["seed"])
    assert sweep_grid_axes(varied, across="seed") == ("seed", "steps", ["CFGScale"])
    assert sweep_grid_axes(varied, per_block="steps") == ("CFGScale", "seed", ["steps"])
    # A name the sweep no longer varies (the form changed) is ignored, not drawn.
    assert sweep_grid_axes(["steps", "seed"], across="CFGScale", down="seed") == ("steps", "seed", [])


def test_choosing_an_axis_swaps_it_and_redraws_grid_and_sheet(demo_session):
    panel = _panel(demo_session, steps="10, 12", seed="1-3")
    panel.run()
    assert panel.grid_axes() == ("steps", "seed", [])
    assert panel.layout_pickers["across"].value == "steps" and panel.layout_pickers["down"].value == "seed"
    assert panel.grid.value.count("<tr>") == 1 + 3  # the header and one row per seed
    sheet = panel.contact_sheet()
    assert (sheet.x, sheet.y) == ("steps", "seed") and sheet.image.width < sheet.image.height

    panel.layout_pickers["across"].value = "seed"  # as a person picks it: seed goes across, steps swaps down
    assert panel.grid_axes() == ("seed", "steps", [])
    assert (panel.state.across, panel.state.down) == ("seed", "steps")
    assert panel.layout_pickers["down"].value == "steps"
    assert panel.grid.value.count("<tr>") == 1 + 2 and "seed=3" in panel.grid.value.split("</tr>")[0]
    assert (panel.sheet.x, panel.sheet.y) == ("seed", "steps") and panel.sheet.image.width > panel.sheet.image.height


def test_per_block_draws_one_table_and_one_sheet_block_per_value(demo_session):
    panel = _panel(demo_session, steps="10, 12", seed="1, 2", CFGScale="3, 5")
    assert panel.grid_axes() == ("steps", "seed", ["CFGScale"])  # the form's order
    panel.choose_layout("per_block", "steps")  # steps and CFGScale swap: CFGScale goes across
    assert panel.grid_axes() == ("CFGScale", "seed", ["steps"])
    panel.choose_layout("across", "seed")  # seed and CFGScale swap
    assert panel.grid_axes() == ("seed", "CFGScale", ["steps"])
    assert panel.grid.value.count("<table") == 2 and "steps=12" in panel.grid.value
    sheet = panel.contact_sheet()  # nothing run yet: every cell a placeholder, in the chosen layout
    assert (sheet.x, sheet.y, sheet.z) == ("seed", "CFGScale", ["steps"])
    with pytest.raises(SweepError, match="not varied"):
        panel.choose_layout("across", "scheduler")


def test_a_failed_cell_is_rerun_as_a_new_run_of_the_same_cell(demo_backend, tmp_path):
    from kandinsky_nb.session import Session

    session = Session(engine=FailingOnce(demo_backend, fail_seed=2), home=tmp_path / "home")
    try:
        panel = _panel(session, seed="1-3")
        panel.run()
        assert panel.report.failed == 1 and "knb-cell-failed" in panel.grid.value
        failed_key = next(c.key for c in panel.plan.cells if c.coords["seed"] == 2)
        # The failed cell is offered first, ready to re-run.
        assert panel.rerun_picker.options[1] == ("seed=2 · failed", failed_key)
        before = panel.plan.cell_states()[failed_key].row
        panel.rerun_picker.value = failed_key
        panel.rerun_button.click()
        after = panel.plan.cell_states()[failed_key]
        assert str(after.state) == "ok" and after.row["task_uuid"] != before["task_uuid"]
        assert after.row["sweep_id"] == panel.plan.name and "knb-cell-failed" not in panel.grid.value
        rows = [r for r in session.runs.sweep_rows(panel.plan.name) if r["sweep_cell"] == failed_key]
        assert [r["status"] for r in rows] == ["failed", "ok"]  # both runs kept, the new one shown

        # A chosen finished cell, named by its coordinates as the grid shows them, runs again too.
        first_key = panel.plan.cells[0].key
        old = panel.plan.cell_states()[first_key].row
        panel.rerun_cell("seed=1")
        new = panel.plan.cell_states()[first_key].row
        assert new["id"] != old["id"] and new["task_uuid"] != old["task_uuid"]
        with pytest.raises(SweepError, match="not a cell"):
            panel.rerun_cell("seed=9")
    finally:
        session.runs.close()


async def test_rerun_from_a_running_loop_awaits_the_async_twin(demo_session):
    panel = _panel(demo_session, seed="1, 2")
    await panel.run()
    key = panel.plan.cells[1].key
    old = panel.plan.cell_states()[key].row
    panel.rerun_picker.value = key
    panel.rerun_button.click()
    assert panel.rerunning and panel.rerun_button.disabled
    report = await panel.rerun_task
    assert report.ok == 1 and not panel.rerunning
    assert panel.plan.cell_states()[key].row["task_uuid"] != old["task_uuid"]


def test_export_writes_the_sheet_with_the_sweep_embedded(demo_session, tmp_path):
    panel = _panel(demo_session, steps="10, 12", seed="1, 2")
    panel.run()
    panel.choose_layout("across", "seed")
    panel.export_button.click()
    saved = demo_session.runs.home / "grids" / f"{panel.plan.name}.png"
    assert saved.is_file() and str(saved) in panel.export_status.value
    meta = read_grid_metadata(saved)
    assert (meta["x"], meta["y"]) == ("seed", "steps")
    definition = meta["definition"]
    assert definition["sweep"] == panel.plan.name
    assert definition["base"]["positivePrompt"] == "a red fox"
    assert definition["axes"] == {"steps": [10, 12], "seed": [1, 2]}
    assert sorted(definition["cells"]) == sorted(cell.key for cell in panel.plan.cells)
    assert {p["status"] for p in meta["placements"]} == {"ok"}
    elsewhere = panel.export_grid(tmp_path / "out" / "grid.png")
    assert json.dumps(read_grid_metadata(elsewhere.read_bytes())["definition"]) == json.dumps(definition)
    assert (
        read_grid_metadata(panel.sheet_image.value or panel.contact_sheet()._repr_png_()) is None
    )  # no chunk on screen
