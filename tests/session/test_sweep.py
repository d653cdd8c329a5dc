"""Sweeps: planning (every cell a valid request with a stable identity), estimates and the budget, running with
failures, cancelling, and resuming after a crash without generating (or paying for) anything twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from sweep_testkit import KEY, PricedEngine, runware, served

from kandinsky_nb import spec
from kandinsky_nb.errors import BudgetExceededError, RequestValidationError, SweepError
from kandinsky_nb.session import Session

PROMPT = "a red fox in snow"


@pytest.fixture
def server():
    engine = PricedEngine(delay=0.02)
    with served(engine) as (url, state):
        yield engine, url, state


@pytest.fixture
def session(server, tmp_path):
    _, url, _ = server
    with Session(runware(url), home=tmp_path / "home") as opened:
        yield opened


# -- planning ---------------------------------------------------------------------------------------------------------
def test_cells_are_full_valid_requests_with_stable_identity(session):
    plan = session.sweep(PROMPT, name="fox", steps="10-30 (+10)", cfg="3,7", scheduler="Euler,UniPC", seed=[1, 2])
    assert len(plan) == 3 * 2 * 2 * 2 == plan.images
    combos = {(c.request.steps, c.request.CFGScale, c.request.scheduler, c.request.seed) for c in plan}
    assert len(combos) == 24
    assert all(c.request.positivePrompt == PROMPT for c in plan)
    assert len({c.request.taskUUID for c in plan}) == 24
    again = session.sweep(
        PROMPT, name="fox", steps=[10, 20, 30], CFGScale=[3.0, 7.0], scheduler=["Euler", "UniPC"], seed="1,2"
    )
    assert [c.key for c in again] == [c.key for c in plan]  # same sweep, same identities (not the same taskUUIDs)
    assert json.loads(plan[0].key) == {"CFGScale": 3.0, "scheduler": "Euler", "seed": 1, "steps": 10}


def test_size_accelerator_and_prompt_axes(session):
    plan = session.sweep(
        PROMPT,
        size=["1280x768", "1K (1:1)"],
        teaCache=True,
        teaCacheDistance="0.1-0.3 (+0.1)",
        negative_prompt=["blurry", "low quality, watermark"],
    )
    assert {(c.request.width, c.request.height) for c in plan} == {(1280, 768), (1024, 1024)}
    assert {c.request.acceleratorOptions.teaCacheDistance for c in plan} == {0.1, 0.2, 0.3}
    assert {c.request.negativePrompt for c in plan} == {"blurry", "low quality, watermark"}
    assert len(plan) == 2 * 3 * 2
    assert [a.name for a in plan.varied] == ["size", "acceleratorOptions.teaCacheDistance", "negativePrompt"]


def test_a_list_of_prompts_is_a_prompt_axis(session):
    plan = session.sweep(["a red fox", "a blue whale"], steps=[10, 20])
    assert [a.name for a in plan.varied] == ["positivePrompt", "steps"]
    assert {c.request.positivePrompt for c in plan} == {"a red fox", "a blue whale"}
    with pytest.raises(SweepError, match="given twice"):
        session.sweep(["a red fox", "a blue whale"], positivePrompt=["a cat"])


def test_unnamed_sweeps_share_one_seed_derived_from_their_definition(session):
    plan = session.sweep(PROMPT, steps=[10, 20])
    again = session.sweep(PROMPT, steps=[10, 20])
    assert plan.name == again.name and plan.name.startswith("sweep-")
    assert len({c.request.seed for c in plan}) == 1
    assert plan[0].request.seed == again[0].request.seed


def test_a_bad_axis_value_is_refused_at_plan_time_naming_it(session, server):
    with pytest.raises(RequestValidationError) as caught:
        session.sweep(PROMPT, steps="40-60 (+10)")
    assert caught.value.fields == ["steps"]
    assert "steps=60" in str(caught.value)
    with pytest.raises(RequestValidationError, match="scheduler"):
        session.sweep(PROMPT, scheduler="Euler,Heun")
    with pytest.raises(SweepError, match=r"'size'.*unknown size"):
        session.sweep(PROMPT, size="1000x1000")
    with pytest.raises(SweepError, match="'stepz' is not a sweep axis"):
        session.sweep(PROMPT, stepz=[10])
    with pytest.raises(SweepError, match="needs a base request with lora"):
        session.sweep(PROMPT, lora_weight="0.5,1")
    assert len(session.runs) == 0
    assert not server[2].generations


def test_estimate_and_the_budget_refuse_before_anything_is_sent(server, tmp_path):
    _, url, state = server
    price = spec.list_price_estimate(1024, 1024, 10) + spec.list_price_estimate(1024, 1024, 20)
    with Session(runware(url), home=tmp_path, budget=price) as session:
        plan = session.sweep(PROMPT, steps=[10, 20], seed=[1, 2])
        estimate = plan.estimate()
        assert (estimate.cells, estimate.images, estimate.cells_to_run) == (4, 4, 4)
        assert estimate.cost_usd == pytest.approx(2 * price)
        assert estimate.cost_source == "list price"
        assert not estimate.within_budget
        with pytest.raises(BudgetExceededError, match="sweep"):
            plan.run(progress=False)
    assert not state.generations


# -- running ----------------------------------------------------------------------------------------------------------
def test_failed_cells_are_logged_and_do_not_stop_the_sweep(session, server, tmp_path):
    plan = session.sweep(PROMPT, name="mixed", steps=[10, 20], scheduler=["Euler", "DDIM"])
    report = plan.run(concurrency=2, progress=False)
    assert (report.ok, report.failed) == (2, 2)
    frame = plan.df
    failed = frame[frame["status"] == "failed"]
    assert set(failed["scheduler"]) == {"DDIM"}
    assert set(failed["error_code"]) == {"unsupportedParameter"}
    assert plan.status() == {"ok": 2, "failed": 2}
    exported = pd.read_csv(plan.export(tmp_path / "mixed.csv"))
    assert sorted(exported["status"]) == ["failed", "failed", "ok", "ok"]
    # Re-running skips what is done and tries the failed cells again (with new taskUUIDs).
    again = session.sweep(PROMPT, name="mixed", steps=[10, 20], scheduler=["Euler", "DDIM"]).run(progress=False)
    assert (again.skipped_done, again.ok, again.failed) == (2, 0, 2)
    assert sum(server[2].generations.values()) == 6


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_refused_key_stops_the_sweep_and_leaves_the_rest_to_do(server, tmp_path, mode):
    # Every cell would meet the same 401: the sweep stops at the first answer instead of sending all 40.
    engine, url, state = server
    engine.delay = 0.05
    mistyped = runware(url, key="rw-test-a-key-the-server-does-not-know")
    async with Session(mistyped, home=tmp_path) as session:
        plan = session.sweep(PROMPT, steps=[10, 20], seed="1-20")
        if mode == "sync":
            report = await asyncio.to_thread(plan.run, 4, progress=False)
        else:
            report = await plan.arun(4, progress=False)
        assert "AuthenticationError" in (report.stopped_by or "") and "run the sweep again" in report.stopped_by
        assert 1 <= report.failed <= 8  # the cells in flight, or started, before the first refusal was counted
        assert report.not_run == 40 - report.failed
        assert plan.status() == {"failed": report.failed, "new": 40 - report.failed}  # the rest stay to do
    assert not state.generations  # nothing was generated, nothing paid


async def test_arun_bounds_concurrency_and_logs_every_cell(server, tmp_path):
    engine, url, state = server
    engine.delay = 0.05
    async with Session(runware(url), home=tmp_path) as session:
        plan = session.sweep(PROMPT, steps=[10, 20, 30], seed="1-4")
        seen: list[int] = []
        report = await plan.arun(concurrency=3, progress=False, on_cell=lambda so_far: seen.append(so_far.ok))
        assert report.ok == 12
        assert seen == list(range(1, 13))  # a panel's progress callback sees every cell
        assert engine.max_in_flight <= 3
        assert plan.status() == {"ok": 12}
        assert len(set(plan.df["task_uuid"])) == 12
    assert set(state.generations.values()) == {1}


async def test_cancelled_cells_stay_pending_and_resume_without_a_second_generation(server, tmp_path):
    engine, url, state = server
    engine.delay = 0.3
    async with Session(runware(url), home=tmp_path) as session:
        plan = session.sweep(PROMPT, name="cancel-me", steps=[10, 20], seed="1-4")
        task = asyncio.create_task(plan.arun(concurrency=3, progress=False))
        while (plan.df["status"] == "ok").sum() < 2:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        states = plan.status()
        assert states["ok"] >= 2 and states["pending"] >= 1
        assert sum(states.values()) == 8
        await asyncio.sleep(0.5)  # the server finishes what it was given
        report = await session.sweep(PROMPT, name="cancel-me", steps=[10, 20], seed="1-4").arun(progress=False)
        # A cancelled request the server had received is fetched by its taskUUID; one cancelled before it arrived
        # is sent again (same taskUUID). Either way each cell is generated once.
        assert report.resumed <= states["pending"]
        assert report.ok == states["pending"] + states.get("new", 0)
        assert plan.status() == {"ok": 8}
    assert sorted(state.generations.values()) == [1] * 8  # nothing generated (or billed) twice


async def test_plan_cancel_stops_starting_cells(server, tmp_path):
    engine, url, _ = server
    engine.delay = 0.1
    async with Session(runware(url), home=tmp_path) as session:
        plan = session.sweep(PROMPT, steps=[10, 20], seed="1-4")

        async def cancel_soon():
            while (plan.df["status"] == "ok").sum() < 1:
                await asyncio.sleep(0.01)
            plan.cancel()

        report, _ = await asyncio.gather(plan.arun(concurrency=1, progress=False), cancel_soon())
        assert report.not_run >= 5
        assert plan.status()["new"] == report.not_run
        finished = await plan.arun(progress=False)
        assert finished.ok == report.not_run and plan.status() == {"ok": 8}


SWEEP_SCRIPT = textwrap.dedent(
    """
    from kandinsky_nb.backends.runware import RunwareBackend
    from kandinsky_nb.session import Session

    backend = RunwareBackend({key!r}, base_url={url!r}, timeout=30, poll_timeout=30)
    session = Session(backend, home={home!r})
    plan = session.sweep("a red fox in snow", name="killed", steps=[10, 20, 30], seed=[1, 2, 3, 4])
    plan.run(concurrency=3, progress=False)
    """
)


def test_a_killed_sweep_resumes_only_the_missing_cells_and_pays_once(tmp_path):
    engine = PricedEngine(delay=0.4)
    home = tmp_path / "home"
    with served(engine) as (url, state):
        child = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT.format(key=KEY, url=url, home=str(home))])
        deadline = time.monotonic() + 90
        ok = 0
        while ok < 4:
            assert child.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.05)
            try:
                with sqlite3.connect(home / "runs.db", timeout=5) as db:
                    ok = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'ok'").fetchone()[0]
            except sqlite3.OperationalError:
                ok = 0  # the log is still being created
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)

        with Session(runware(url), home=home) as session:
            plan = session.sweep(PROMPT, name="killed", steps=[10, 20, 30], seed=[1, 2, 3, 4])
            before = plan.status()
            assert before["ok"] >= 4 and before["pending"] >= 1 and sum(before.values()) == 12
            report = plan.run(concurrency=3, progress=False)
            assert report.skipped_done == before["ok"]
            assert report.ok == 12 - before["ok"] and report.resumed <= before["pending"]
            assert plan.status() == {"ok": 12}
            frame = plan.df
    ok_rows = frame[frame["status"] == "ok"]
    assert ok_rows["sweep_cell"].is_unique and len(ok_rows) == 12
    assert len(state.generations) == 12 and set(state.generations.values()) == {1}  # each task generated once
    price = {s: spec.list_price_estimate(1024, 1024, s) for s in (10, 20, 30)}
    assert ok_rows["cost_usd"].sum() == pytest.approx(4 * sum(price.values()))  # paid once per cell


def test_a_submitted_but_unanswered_cell_is_fetched_by_its_task_uuid(session, server):
    _, url, state = server
    plan = session.sweep(PROMPT, name="crashed", steps=[10, 20])
    cell = plan[0]
    # What a crash leaves: the submitted row was written and the request reached the engine, the answer never
    # reached the log.
    session.runs.record_submitted(cell.request, engine="runware", demo=False, sweep_id="crashed", sweep_cell=cell.key)
    with runware(url) as crashed_process:
        crashed_process.generate(cell.request)
    assert plan.status() == {"pending": 1, "new": 1}
    report = plan.run(progress=False)
    assert (report.resumed, report.ok) == (1, 2)
    assert state.generations[cell.request.taskUUID] == 1
    [row] = session.runs.get(cell.request.taskUUID)
    assert row["status"] == "ok" and row["sweep_cell"] == cell.key


def test_a_poll_timeout_is_unanswered_then_fetched_not_paid_again(tmp_path):
    engine = PricedEngine(delay=0.6)
    with served(engine) as (url, state), Session(runware(url, poll_timeout=0.2), home=tmp_path) as session:
        plan = session.sweep(PROMPT, name="slow", steps=[10], deliveryMethod="async")
        report = plan.run(progress=False)
        assert report.failed == 1
        [row] = plan.df.to_dict("records")
        assert (row["status"], row["error_type"]) == ("unanswered", "PollTimeoutError")
        assert plan.status() == {"pending": 1}
        assert session.budget.spent > 0  # it may have run: the hold stays counted
        time.sleep(0.8)  # the engine finishes the task
        again = plan.run(progress=False)
        assert (again.resumed, again.ok) == (1, 1)
        assert plan.status() == {"ok": 1}
    assert list(state.generations.values()) == [1]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_batches_send_several_cells_in_one_request(server, tmp_path, mode):
    _, url, state = server
    async with Session(runware(url), home=tmp_path) as session:
        plan = session.sweep(PROMPT, steps=[10, 20], seed="1-4", scheduler="Euler")
        if mode == "sync":
            report = plan.run(concurrency=2, batch_size=4, progress=False)
        else:
            report = await plan.arun(concurrency=2, batch_size=4, progress=False)
        assert report.ok == 8
        assert plan.status() == {"ok": 8}
        mixed = session.sweep(PROMPT, steps=[10], seed=[1, 2], scheduler=["Euler", "DDIM"])
        mixed_report = await mixed.arun(batch_size=4, progress=False)
        assert (mixed_report.ok, mixed_report.failed) == (2, 2)  # one task's error does not fail its batch
    posts = [body for body in state.received if any(t.get("taskType") == "imageInference" for t in body)]
    assert sorted(len(body) for body in posts) == [4, 4, 4]
    assert set(state.generations.values()) == {1}


def test_a_pending_cell_whose_lookup_fails_stays_pending_and_is_not_sent(tmp_path):
    engine = PricedEngine(delay=0.4)
    with served(engine) as (url, state):
        session = Session(runware(url, poll_timeout=0.1), home=tmp_path)
        plan = session.sweep(PROMPT, name="offline", steps=[10], deliveryMethod="async")
        assert plan.run(progress=False).failed == 1
        assert plan.status() == {"pending": 1}
    # The engine cannot be asked any more: the cell's outcome says so, and nothing is sent in its place.
    report = plan.run(progress=False)
    assert (report.ok, report.failed) == (0, 1)
    assert "was not sent again" in report.errors[0]["error"]
    assert plan.status() == {"pending": 1}
    session.close()
    assert list(state.generations.values()) == [1]
