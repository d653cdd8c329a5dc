"""Session: engine choice, validation before anything is spent, logging of every outcome, the budget cap at any
concurrency, and the sync twin inside a running event loop (as in Jupyter). The engine is reached over the real
Runware protocol (the project's server on 127.0.0.1 in front of an engine that charges a known price)."""

from __future__ import annotations

import asyncio

import pytest
from sweep_testkit import KEY, PricedEngine, runware, served

from kandinsky_nb import spec
from kandinsky_nb.errors import BudgetExceededError, ConfigurationError, RequestValidationError, TaskError
from kandinsky_nb.planning import build_request
from kandinsky_nb.session import Session, choose_engine
from kandinsky_nb.session.budget import DEFAULT_MARGIN

PRICE_10 = spec.list_price_estimate(1024, 1024, 10)  # one default-size image at 10 steps


@pytest.fixture
def server():
    engine = PricedEngine(delay=0.02)
    with served(engine) as (url, state):
        yield engine, url, state


@pytest.mark.parametrize(
    ("argument", "environ", "expected"),
    [
        (None, {}, "demo"),
        (None, {"RUNWARE_API_KEY": "k"}, "runware"),
        (None, {"RUNWARE_API_KEY": "  "}, "demo"),
        (None, {"KANDINSKY_NB_WEIGHTS": "/w"}, "local"),
        (None, {"RUNWARE_API_KEY": "k", "KANDINSKY_NB_WEIGHTS": "/w"}, "runware"),
        (None, {"RUNWARE_API_KEY": "k", "KANDINSKY_NB_ENGINE": "demo"}, "demo"),
        ("local", {"RUNWARE_API_KEY": "k", "KANDINSKY_NB_ENGINE": "demo"}, "local"),
        ("RUNWARE", {}, "runware"),
    ],
)
def test_engine_choice(argument, environ, expected):
    assert choose_engine(argument, environ=environ) == expected


def test_unknown_engine_is_refused():
    with pytest.raises(ConfigurationError, match="use one of runware, local, demo"):
        choose_engine("cloud", environ={})


def test_generate_logs_the_run_and_counts_its_cost(server):
    _, url, state = server
    with Session(runware(url)) as session:
        result = session.generate("a red fox in snow", steps=10, seed=4)
        [row] = session.runs.get(result.task_uuid)
    assert row["status"] == "ok" and row["engine"] == "runware"
    assert row["cost_usd"] == pytest.approx(PRICE_10)
    assert session.budget.spent == pytest.approx(PRICE_10)
    assert state.generations[result.task_uuid] == 1


def test_invalid_request_sends_and_spends_nothing(server):
    _, url, state = server
    with Session(runware(url), budget=1.0) as session:
        with pytest.raises(RequestValidationError) as caught:
            session.generate("a red fox in snow", steps=5)
        assert caught.value.fields == ["steps"]
        assert len(session.runs) == 0
        assert session.budget.spent == session.budget.reserved == 0
    assert not state.generations


def test_engine_failure_is_logged_with_code_and_message_then_raised(server):
    _, url, _ = server
    with Session(runware(url), budget=1.0) as session:
        with pytest.raises(TaskError) as caught:
            session.generate("a red fox in snow", steps=10, scheduler="DDIM")
        [row] = session.runs.get(caught.value.task_uuid)
        assert row["status"] == "failed"
        assert row["error_code"] == caught.value.code == "unsupportedParameter"
        assert "DDIM" in row["error_message"]
        assert KEY not in row["error_message"]
        assert session.budget.spent == 0  # a refused task is not billed; its hold is released


def test_budget_refuses_before_sending(server):
    _, url, state = server
    with Session(runware(url), budget=PRICE_10) as session:  # the margin makes one request not fit
        with pytest.raises(BudgetExceededError) as caught:
            session.generate("a red fox in snow", steps=10)
        assert caught.value.cap == PRICE_10
        assert len(session.runs) == 0
    assert not state.generations


@pytest.mark.parametrize("concurrency", [1, 2, 5, 16])
async def test_budget_cap_holds_at_any_concurrency(concurrency):
    # Each image costs 1.2x its list price (inside the 1.25 reservation margin); the cap fits about 6 of 16.
    engine = PricedEngine(delay=0.03, price_factor=1.2)
    cap = PRICE_10 * 7.3
    with served(engine) as (url, state):
        session = Session(runware(url), budget=cap)
        gate = asyncio.Semaphore(concurrency)

        async def one(seed: int) -> str:
            async with gate:
                try:
                    await session.agenerate("a red fox in snow", steps=10, seed=seed)
                    return "ok"
                except BudgetExceededError:
                    return "refused"

        outcomes = await asyncio.gather(*(one(seed) for seed in range(16)))
        frame = session.runs.df
        await session.aclose()
    sent = sum(state.generations.values())
    assert outcomes.count("ok") == sent == len(frame) == (frame["status"] == "ok").sum()
    assert outcomes.count("refused") == 16 - sent > 0
    assert frame["cost_usd"].sum() <= cap
    assert session.budget.spent <= cap
    # Everything in flight at once was covered by the cap when it was reserved.
    assert engine.max_in_flight * PRICE_10 * DEFAULT_MARGIN <= cap + 1e-12


async def test_sync_generate_works_inside_a_running_event_loop(server):
    _, url, _ = server
    assert asyncio.get_running_loop().is_running()  # as in a Jupyter cell
    async with Session(runware(url)) as session:
        result = session.generate("a red fox in snow", steps=10, seed=1)
        other = await session.agenerate("a red fox in snow", steps=10, seed=2)
        assert [r["status"] for r in session.runs.rows()] == ["ok", "ok"]
    assert result.seeds == [1] and other.seeds == [2]


def test_estimate_uses_list_price_then_the_fitted_model(server):
    _, url, _ = server
    with Session(runware(url)) as session:
        first = session.estimate(positivePrompt="a red fox in snow", steps=30, width=1280, height=768)
        assert first.cost_source == "list price"
        assert first.cost_usd == pytest.approx(spec.list_price_estimate(1280, 768, 30))
        for steps in (10, 20, 30, 40):
            session.generate("a red fox in snow", steps=steps, seed=steps)
    with Session(runware(url)) as session:  # a new session fits the costs already logged
        fitted = session.estimate(positivePrompt="a red fox in snow", steps=30, width=1280, height=768)
        assert fitted.cost_source.startswith("fitted to 4 logged runware runs")
        assert fitted.cost_usd == pytest.approx(spec.list_price_estimate(1280, 768, 30), rel=1e-6)


def test_a_sessions_requests_follow_runs_another_session_logged_into_its_home(server, tmp_path):
    # Two kernels on one run log: a session's requests are timed (and priced) by a model refitted when the log grows,
    # whoever logged the rows; its estimates (panels) count the log and see them at once.
    _, url, _ = server
    home = tmp_path / "shared"
    asked = {"positivePrompt": "a red fox in snow", "steps": 10}
    with Session("runware", api_key=KEY, base_url=url, home=home) as session:
        expected_latency = session.backend.config.expected_latency
        session.generate(**asked, seed=1)
        assert expected_latency(build_request(**asked)) is None  # one run logged: no latency fit yet
        with Session(runware(url), home=home) as other:
            for seed in range(2, 14):
                other.generate(**asked, seed=seed)
        session.generate(**asked, seed=14)
        assert expected_latency(build_request(**asked)) is not None
        assert session.estimate(**asked).cost_source.startswith("fitted to 13 logged runware runs")


async def test_sync_sweep_runs_inside_a_running_event_loop(server, tmp_path):
    _, url, state = server
    async with Session(runware(url), home=tmp_path) as session:
        report = session.sweep("a red fox in snow", steps=[10, 20], seed=[1, 2]).run(progress=False)
    assert report.ok == 4 and len(state.generations) == 4


@pytest.mark.local
def test_demo_engine_runs_are_marked_and_priced_by_gpu_seconds(demo_backend, tmp_path):
    from kandinsky_nb.runlog import read_embedded_params

    session = Session(demo_backend, home=tmp_path)
    assert "images are noise" in repr(session)
    result = session.generate("a red fox in snow", steps=10, seed=3, outputFormat="PNG")
    [row] = session.runs.get(result.task_uuid)
    assert row["demo"] == 1 and row["engine"] == "local"
    assert row["gpu_seconds"] > 0 and row["cost_usd"] > 0
    params = read_embedded_params(session.runs.image_path(row))
    assert params["demo"] is True and "noise" in params["note"]
    # The local engine refuses what it cannot honour at plan time, before anything runs.
    from kandinsky_nb.errors import UnsupportedByEngineError

    with pytest.raises(UnsupportedByEngineError):
        session.sweep("a red fox in snow", scheduler="Euler,DDIM")
    assert len(session.runs) == 1


def test_a_poll_timeout_is_resumed_by_task_uuid(tmp_path):
    from kandinsky_nb.errors import PollTimeoutError, RunLogError

    engine = PricedEngine(delay=0.5)
    with served(engine) as (url, state), Session(runware(url, poll_timeout=0.15), home=tmp_path) as session:
        with pytest.raises(PollTimeoutError) as caught:
            session.generate("a red fox in snow", steps=10, deliveryMethod="async")
        task_uuid = caught.value.task_uuid
        assert session.runs.get(task_uuid)[0]["status"] == "unanswered"
        import time

        time.sleep(0.7)
        result = session.resume(task_uuid)
        assert result.task_uuid == task_uuid
        assert session.runs.get(task_uuid)[0]["status"] == "ok"
        with pytest.raises(RunLogError, match="already 'ok'"):
            session.resume(task_uuid)
    assert state.generations[task_uuid] == 1


def test_generate_many_is_one_batch_with_a_slot_per_request(server):
    from kandinsky_nb.types import ImageInferenceRequest

    _, url, state = server
    with Session(runware(url)) as session:
        requests = [
            ImageInferenceRequest(positivePrompt="a red fox in snow", steps=10, seed=1),
            ImageInferenceRequest(positivePrompt="a red fox in snow", steps=10, scheduler="DDIM"),
        ]
        good, bad = session.generate_many(requests)
        assert good.seeds == [1]
        assert isinstance(bad, TaskError)
        assert [r["status"] for r in session.runs.rows()] == ["ok", "failed"]
    assert len([b for b in state.received if any(t.get("taskType") == "imageInference" for t in b)]) == 1


def test_a_task_still_running_is_never_sent_again(tmp_path):
    from kandinsky_nb.errors import PollTimeoutError
    from kandinsky_nb.types import ImageInferenceRequest

    engine = PricedEngine(delay=1.0)
    with served(engine) as (url, state), Session(runware(url, poll_timeout=0.15), home=tmp_path) as session:
        with pytest.raises(PollTimeoutError) as caught:
            session.generate("a red fox in snow", steps=10, deliveryMethod="async")
        task_uuid = caught.value.task_uuid
        # Resumed while the engine is still working on it: the lookup times out again and nothing is resubmitted.
        with pytest.raises(PollTimeoutError):
            session.resume(task_uuid)
        assert session.runs.get(task_uuid)[0]["status"] == "unanswered"
        logged = ImageInferenceRequest.model_validate_json(session.runs.get(task_uuid)[0]["request_json"])
        with pytest.raises(PollTimeoutError) as again:
            session.resume(logged)  # by its request: the same story
        assert any("not sent again" in note for note in again.value.__notes__)
        assert session.runs.get(task_uuid)[0]["status"] == "unanswered"
    assert state.generations[task_uuid] == 1


def test_threads_share_one_sync_client(tmp_path):
    import threading

    from kandinsky_nb.backends.runware import RunwareBackend

    backend = RunwareBackend("k", base_url="http://127.0.0.1:9")
    clients: list[object] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        clients.append(backend._sync_client())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backend.close()
    assert len({id(client) for client in clients}) == 1


def test_a_failed_lookup_sends_nothing_and_says_so(tmp_path):
    from kandinsky_nb.errors import APIError, PollTimeoutError

    engine = PricedEngine(delay=0.4)
    with served(engine) as (url, state):
        session = Session(runware(url, poll_timeout=0.1), home=tmp_path)
        with pytest.raises(PollTimeoutError) as caught:
            session.generate("a red fox in snow", steps=10, deliveryMethod="async")
        task_uuid = caught.value.task_uuid
    # The engine is gone: the lookup cannot say whether the task ran, so nothing is sent and the run stays open.
    with pytest.raises(APIError) as lookup:
        session.resume(task_uuid)
    assert any(task_uuid in note and "not sent again" in note for note in lookup.value.__notes__)
    assert session.runs.get(task_uuid)[0]["status"] == "unanswered"
    session.close()
    assert state.generations[task_uuid] == 1


def test_bad_constructor_arguments_raise_configuration_errors(tmp_path):
    with pytest.raises(ConfigurationError, match=r"concurrency=0 .* at least 1"):
        Session("demo", home=tmp_path, concurrency=0)
    with pytest.raises(ConfigurationError, match=r"budget=-1 .* budget=None for no cap"):
        Session("demo", home=tmp_path, budget=-1)
    with pytest.raises(ConfigurationError, match="engine must be 'runware', 'local', 'demo' or a Backend"):
        Session(object(), home=tmp_path)  # type: ignore[arg-type]


def test_generate_many_wants_one_cell_per_request(server, tmp_path):
    from kandinsky_nb.planning import CellRef
    from kandinsky_nb.types import ImageInferenceRequest

    _, url, state = server
    with Session(runware(url), home=tmp_path) as session:
        requests = [ImageInferenceRequest(positivePrompt="a red fox in snow", steps=10, seed=s) for s in (1, 2)]
        with pytest.raises(ConfigurationError, match="one CellRef"):
            session.generate_many(requests, cells=[CellRef("s", "{}")])
        first, second = session.generate_many(requests, cells=[CellRef("s", '{"seed":1}'), None])
        rows = {row["task_uuid"]: row for row in session.runs.rows()}
    assert (rows[first.task_uuid]["sweep_id"], rows[first.task_uuid]["sweep_cell"]) == ("s", '{"seed":1}')
    assert rows[second.task_uuid]["sweep_id"] is None
    assert len(state.generations) == 2
