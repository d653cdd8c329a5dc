"""Polling near the limit: the first getResponse goes at the expected finish (the server's hint, else the session's
fitted latency, else the default schedule), later ones follow it closely and back off; 429 and Retry-After are
respected. Pure decisions first, then real clients against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest
from scale_testkit import KEY, PollLog, SleepEngine

from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.protocol import RetryPolicy
from kandinsky_nb.protocol.policy import EXPECTED_SECONDS_FIELD, latency_hint, retry_after_seconds
from kandinsky_nb.server import ServerThread, create_app
from kandinsky_nb.types import ImageInferenceRequest

LATENCY = 0.4


def request(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(positivePrompt="a red fox in snow", outputType="base64Data", **fields)


# -- the schedule, as plain numbers -------------------------------------------------------------------------------
def test_with_an_expected_latency_the_first_poll_goes_at_the_expected_finish() -> None:
    policy = RetryPolicy(poll_margin=0.02)
    assert policy.poll_delay(1, expected=2.0, elapsed=0.0) == pytest.approx(2.04)
    assert policy.poll_delay(1, expected=2.0, elapsed=0.5) == pytest.approx(1.54)
    assert policy.poll_delay(1, expected=2.0, elapsed=3.0) == 0.0  # already late: ask at once


def test_after_the_expected_finish_polls_follow_closely_then_back_off_to_the_cap() -> None:
    policy = RetryPolicy(poll_close=0.05, poll_floor=0.01, poll_factor=2.0, poll_max=0.5, poll_margin=0.0)
    gaps = [policy.poll_delay(n, expected=1.0, elapsed=1.0) for n in range(2, 9)]
    assert gaps == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    # A short task is never polled faster than poll_floor.
    assert policy.poll_delay(2, expected=0.01, elapsed=0.02) == pytest.approx(0.01)


def test_a_later_hint_that_moves_the_finish_is_waited_for() -> None:
    policy = RetryPolicy(poll_margin=0.0)
    assert policy.poll_delay(3, expected=5.0, elapsed=1.0) == pytest.approx(4.0)


def test_without_an_expected_latency_the_default_schedule_holds() -> None:
    policy = RetryPolicy(poll_initial=1, poll_factor=2, poll_max=5)
    assert [policy.poll_delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


@pytest.mark.parametrize(
    "fields",
    [{"poll_factor": 0.5}, {"poll_floor": 0}, {"poll_close": 0}, {"poll_margin": -0.1}, {"poll_max": 0}],
)
def test_a_schedule_that_would_hammer_the_server_is_refused(fields) -> None:
    name = next(iter(fields))
    with pytest.raises(ConfigurationError, match=name):
        RetryPolicy(**fields)


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0.5 ") == 0.5
    now = 1_800_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 7, usegmt=True), now=now) == pytest.approx(7.0)
    assert retry_after_seconds(email.utils.formatdate(now - 7, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("-4") == 0.0
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert retry_after_seconds(unreadable) is None


def test_a_latency_hint_is_a_finite_number_of_seconds_or_nothing() -> None:
    assert latency_hint({EXPECTED_SECONDS_FIELD: 1.5}) == 1.5
    assert latency_hint({EXPECTED_SECONDS_FIELD: 2}) == 2.0
    for bad in ("1.5", True, -1, float("nan"), None):
        assert latency_hint({EXPECTED_SECONDS_FIELD: bad}) is None
    assert latency_hint({}) is None


# -- real clients, real server ---------------------------------------------------------------------------------------
@pytest.fixture
def poll_log():
    log = PollLog(create_app(SleepEngine(LATENCY), api_keys=[KEY], max_concurrency=8))
    with ServerThread(log) as server:
        log.url = server.url
        yield log


def test_the_server_hints_its_latency_and_one_poll_at_the_expected_finish_is_enough(poll_log) -> None:
    # The default schedule would poll at 0.5 s (and 1.25 s); the hint says 0.4 s, and the answer is there then.
    backend = RunwareBackend(KEY, base_url=poll_log.url, timeout=10)
    state = poll_log.app.state.kandinsky
    with backend:
        backend.generate(request(seed=1))  # sync: the server measures its engine
        assert state.latency.expected(request(), rounds=1) == pytest.approx(LATENCY, rel=0.25)
        for seed in range(2, 5):
            poll_log.polls.clear()
            started = time.monotonic()
            generation = backend.generate(request(seed=seed, deliveryMethod="async"))
            took = time.monotonic() - started
            assert generation.details["polls"] == 1 and len(poll_log.polls) == 1
            assert poll_log.polls[0] - started >= LATENCY  # not before the expected finish
            assert took < LATENCY * 1.5, took


def test_the_acknowledgement_carries_the_hint_only_once_the_engine_was_measured(poll_log) -> None:
    import httpx

    def acknowledge(seed: int) -> dict:
        body = [{**request(seed=seed, deliveryMethod="async").to_wire()}]
        answer = httpx.post(poll_log.url + "/v1", json=body, headers={"Authorization": f"Bearer {KEY}"})
        return answer.json()["data"][0]

    assert EXPECTED_SECONDS_FIELD not in acknowledge(1)  # nothing measured yet: no hint beats a wrong one
    time.sleep(LATENCY * 1.5)
    assert acknowledge(2)[EXPECTED_SECONDS_FIELD] == pytest.approx(LATENCY, rel=0.25)


def test_the_sessions_fitted_latency_steers_the_first_poll_when_the_server_gives_no_hint(poll_log) -> None:
    # Fresh server: no hint yet. The expected latency handed down (a session passes CostModel.seconds) decides.
    asked: list[ImageInferenceRequest] = []

    def expected(req: ImageInferenceRequest) -> float:
        asked.append(req)
        return LATENCY

    slow_default = RetryPolicy(poll_initial=3.0)  # without the expectation the first poll would wait 3 s
    backend = RunwareBackend(
        KEY, base_url=poll_log.url, timeout=10, retry_policy=slow_default, expected_latency=expected
    )
    with backend:
        started = time.monotonic()
        generation = backend.generate(request(seed=7, deliveryMethod="async"))
    assert [r.seed for r in asked] == [7]
    assert generation.details["polls"] == 1
    assert LATENCY <= poll_log.polls[0] - started < 2.0


async def test_a_429_with_retry_after_is_waited_out_before_the_next_poll() -> None:
    log = PollLog(create_app(SleepEngine(0.05), api_keys=[KEY]), throttle=1, retry_after="1")
    with ServerThread(log) as server:
        async with RunwareBackend(KEY, base_url=server.url, timeout=10) as backend:
            generation = await backend.agenerate(request(seed=1, deliveryMethod="async"))
    assert len(generation.images) == 1
    (throttled,) = log.throttled
    assert log.polls and log.polls[0] - throttled >= 1.0  # the server asked for a second; the backoff alone is ~0.5 s


async def test_concurrent_async_tasks_poll_about_once_each_when_latency_is_steady(poll_log) -> None:
    async with RunwareBackend(KEY, base_url=poll_log.url, timeout=10) as backend:
        await backend.agenerate(request(seed=0))
        poll_log.polls.clear()
        gate = asyncio.Semaphore(4)

        async def one(seed: int):
            async with gate:
                return await backend.agenerate(request(seed=seed, deliveryMethod="async"))

        generations = await asyncio.gather(*(one(seed) for seed in range(1, 13)))
    polls = [g.details["polls"] for g in generations]
    assert sum(polls) / len(polls) <= 3, polls


def test_a_task_the_server_lost_is_sent_again_with_the_same_task_uuid() -> None:
    # A replica that stopped mid-task leaves it failed with a retryable code: nothing was charged, so the client
    # sends it again (same taskUUID) instead of failing the cell.
    import json

    from kandinsky_nb.protocol import FlowConfig, Post, Reply, Sleep, conversation

    req = request(seed=3, deliveryMethod="async")
    flow = conversation([req], config=FlowConfig(policy=RetryPolicy(initial_delay=0.01, max_delay=0.02)))

    def answer(payload: dict) -> Reply:
        return Reply(200 if "data" in payload else 500, json.dumps(payload).encode(), "application/json")

    ack = {"data": [{"taskType": "imageInference", "taskUUID": req.taskUUID, "status": "processing"}]}
    lost = {"errors": [{"code": "inferenceError", "message": "replica stopped", "taskUUID": req.taskUUID}]}
    done = {
        "data": [
            {
                "taskType": "imageInference",
                "taskUUID": req.taskUUID,
                "imageUUID": "0d7f5a52-7f6e-4a57-8d2b-6f0c1c7e9a10",
                "imageBase64Data": __import__("base64").b64encode(__import__("scale_testkit").png()).decode(),
                "status": "success",
            }
        ]
    }
    sent: list[tuple[str, list[str]]] = []
    action = next(flow)
    replies = iter([ack, lost, ack, done])
    try:
        while True:
            if isinstance(action, Post):
                sent.append((action.purpose, [t["taskUUID"] for t in action.tasks]))
                action = flow.send(answer(next(replies)))
            else:
                assert isinstance(action, Sleep)
                action = flow.send(None)
    except StopIteration as finished:
        (generation,) = finished.value
    assert [purpose for purpose, _ in sent] == ["submit", "poll", "submit", "poll"]
    assert {uuid for _, uuids in sent for uuid in uuids} == {req.taskUUID}
    assert generation.details["submits"] == 2 and generation.details["retries"] == 1


def test_a_session_hands_its_fitted_latency_to_the_runware_engine(poll_log, tmp_path) -> None:
    # The Session is what knows this engine's latencies (its run log); the Runware engine polls by them.
    from kandinsky_nb.session import Session

    with Session(engine="runware", api_key=KEY, base_url=poll_log.url, home=tmp_path / "home") as session:
        expected_latency = session.backend.config.expected_latency
        assert expected_latency is not None
        assert expected_latency(request()) is None  # nothing logged yet: the engine keeps its default schedule
        for seed in range(10):
            session.generate(request=request(seed=seed))
        assert expected_latency(request()) == pytest.approx(LATENCY, rel=0.5)
