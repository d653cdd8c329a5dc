"""Async delivery near the limit: the poll aimed at the server's expected finish, concurrent calls sharing their
getResponse POSTs (each still gets its own task's answer, errors and 429s included), and the server answering a
poll that arrives just before the finish with the result. Pure decisions first, then real clients against the real
server on 127.0.0.1 (through the fault proxy where a fault is needed)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fault_proxy import Fault, FaultProxy
from runware_testkit import FAST, KEY, MODES, call
from stub_engine import StubEngine

from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.protocol import FlowConfig, Post, Reply, RetryPolicy, Sleep, classify, conversation, poll_task
from kandinsky_nb.protocol.flow import Failure, coalesce_polls, split_reply
from kandinsky_nb.protocol.policy import EXPECTED_SECONDS_FIELD, POLL_WAIT_FIELD
from kandinsky_nb.server import ServerThread, create_app
from kandinsky_nb.types import ImageInferenceRequest

IMAGE = base64.b64encode(b"an image").decode()  # classify() reads items; it does not decode them


def prompt(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(positivePrompt="a red fox in snow", **fields)


def result(task_uuid: str) -> dict:
    return {
        "taskType": "imageInference",
        "taskUUID": task_uuid,
        "imageUUID": f"image-of-{task_uuid}",
        "imageBase64Data": IMAGE,
        "status": "success",
    }


def reply(body: dict, status: int = 200, retry_after: float | None = None) -> Reply:
    return Reply(status, json.dumps(body).encode(), "application/json", retry_after=retry_after)


def polls(*task_uuids: str) -> Post:
    return Post([poll_task(task_uuid) for task_uuid in task_uuids], 5.0, "poll")


# -- coalescing, as plain data ---------------------------------------------------------------------------------------
def test_coalesced_polls_go_in_one_post_and_each_conversation_gets_only_its_own_tasks():
    first, second = polls("A"), Post([poll_task("B"), poll_task("C")], 9.0, "poll")
    merged = coalesce_polls([first, second])
    assert [task["taskUUID"] for task in merged.tasks] == ["A", "B", "C"]
    assert (merged.purpose, merged.timeout) == ("poll", 9.0)  # the most patient of them: nobody's poll is cut short
    processing = {"taskType": "imageInference", "taskUUID": "B", "status": "processing", EXPECTED_SECONDS_FIELD: 0.1}
    answer = reply({"data": [result("C"), result("A"), processing]})
    mine, theirs = split_reply(answer, [first, second])
    assert classify(mine).envelope.items == [result("A")]
    assert classify(theirs).envelope.items == [result("C"), processing]


def test_a_task_error_in_a_coalesced_answer_fails_only_the_conversation_that_asked():
    lost, fine = polls("A"), polls("B")
    not_found = {"code": "taskNotFound", "message": "No task A", "taskUUID": "A", "taskType": "getResponse"}
    answer = reply({"data": [result("B")], "errors": [not_found]}, status=404)
    for_lost, for_fine = split_reply(answer, [lost, fine])
    assert for_lost.status == 404 and classify(for_lost).envelope.errors_for("A")
    # The 404 was about another conversation's task: this one reads its result as any 200.
    verdict = classify(for_fine)
    assert (for_fine.status, verdict.kind, verdict.envelope.items) == (200, "ok", [result("B")])


def test_a_429_on_a_coalesced_poll_reaches_every_conversation_with_its_retry_after():
    throttled = reply({"errors": [{"code": "rateLimitExceeded", "message": "slow down"}]}, 429, retry_after=2.0)
    for part in split_reply(throttled, [polls("A"), polls("B")]):
        verdict = classify(part)
        assert (verdict.kind, verdict.status, verdict.retry_after) == ("retry", 429, 2.0)


def test_no_answer_or_an_answer_of_another_shape_goes_to_every_conversation_as_it_came():
    parts = [polls("A"), polls("B")]
    dropped = Failure("ConnectError: refused")
    assert split_reply(dropped, parts) == [dropped, dropped]
    broken = Reply(502, b"<html>bad gateway</html>", "text/html")
    assert split_reply(broken, parts) == [broken, broken]


# -- when the first poll goes ------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def first_poll_wait(ack: dict, *, ack_takes: float, **config) -> float:
    """Seconds the conversation sleeps between the acknowledgement and its first poll, when the acknowledgement
    comes back ``ack_takes`` seconds after the submit went out."""
    request = prompt(seed=1, deliveryMethod="async")
    clock = Clock()
    flow = conversation([request], config=FlowConfig(**config), clock=clock)
    submit = next(flow)
    assert isinstance(submit, Post) and submit.purpose == "submit"
    clock.now += ack_takes
    ack = {"taskType": "imageInference", "taskUUID": request.taskUUID, "status": "processing", **ack}
    wait = flow.send(reply({"data": [ack]}))
    assert isinstance(wait, Sleep)
    return wait.seconds


def test_a_server_that_holds_polls_is_polled_one_round_trip_before_the_expected_finish():
    # The poll leaves as long before the finish as the acknowledgement took to come back, so it is at the server
    # when the result is stored, and the server answers it then (it said it would wait pollWaitSeconds).
    hint = {EXPECTED_SECONDS_FIELD: 2.0, POLL_WAIT_FIELD: 0.5}
    assert first_poll_wait(hint, ack_takes=0.03) == pytest.approx(2.0 - 0.03)
    # Never earlier than poll_lead of the expected latency, nor than half the server's wait, however slow the trip.
    assert first_poll_wait(hint, ack_takes=0.4) == pytest.approx(2.0 * (1 - 0.05))
    short_hold = {EXPECTED_SECONDS_FIELD: 2.0, POLL_WAIT_FIELD: 0.06}
    assert first_poll_wait(short_hold, ack_takes=0.4) == pytest.approx(2.0 - 0.03)


def test_a_server_that_does_not_hold_polls_is_polled_after_its_expected_finish():
    # An early poll there is answered "processing" and costs a second one: keep the margin after the finish.
    policy = RetryPolicy(poll_margin=0.02)
    assert first_poll_wait({EXPECTED_SECONDS_FIELD: 2.0}, ack_takes=0.03, policy=policy) == pytest.approx(2.04)


def test_a_fitted_expectation_keeps_its_margin_after_the_expected_finish():
    # No hint (the cloud sends none): the session's fitted latency decides, and nobody holds the poll.
    policy = RetryPolicy(poll_margin=0.02)
    wait = first_poll_wait({}, ack_takes=0.03, policy=policy, expected_latency=lambda request: 2.0)
    assert wait == pytest.approx(2.04)


def test_a_poll_lead_out_of_range_is_refused():
    for lead in (-0.1, 1.0):
        with pytest.raises(ConfigurationError, match="poll_lead"):
            RetryPolicy(poll_lead=lead)


def test_without_any_expectation_the_default_schedule_still_holds():
    policy = RetryPolicy(poll_initial=1.5)
    assert first_poll_wait({}, ack_takes=0.3, policy=policy) == pytest.approx(1.5)


# -- concurrent callers share their polls ------------------------------------------------------------------------------
@pytest.fixture
def wide_proxy(engine):
    """The fault proxy in front of a server that runs 8 generations at once, so concurrent tasks finish together."""
    with (
        ServerThread(create_app(engine, api_keys=[KEY], max_concurrency=8)) as server,
        FaultProxy(server.url) as proxy,
    ):
        yield proxy


def backend_for(proxy) -> RunwareBackend:
    return RunwareBackend(KEY, base_url=proxy.url, timeout=5.0, poll_timeout=5.0, retry_policy=FAST)


def poll_posts(proxy) -> list[list[str]]:
    """The taskUUIDs of every getResponse POST the proxy passed, in order."""
    posts = []
    for seen in proxy.seen:
        tasks = json.loads(seen.body) if seen.body else []
        if any(task.get("taskType") == "getResponse" for task in tasks):
            posts.append([task["taskUUID"] for task in tasks])
    return posts


def run_concurrently(backend: RunwareBackend, mode: str, requests: list[ImageInferenceRequest]) -> list:
    if mode == "sync":
        try:
            with ThreadPoolExecutor(len(requests)) as pool:
                return list(pool.map(backend.generate, requests))
        finally:
            backend.close()

    async def gather() -> list:
        try:
            return await asyncio.gather(*(backend.agenerate(request) for request in requests))
        finally:
            await backend.aclose()

    return asyncio.run(gather())


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_calls_share_poll_posts_and_each_gets_its_own_images(mode, engine, wide_proxy):
    proxy = wide_proxy
    engine.delay = 0.2
    backend = backend_for(proxy)
    call(backend, mode, "generate", prompt(seed=1))  # the server measures its engine: acknowledgements carry a hint
    # The first poll POST is held up on its way: the polls that fall due meanwhile must go together in the next.
    proxy.inject(Fault("delay", delay=0.3, task_type="getResponse"))
    requests = [prompt(seed=seed, deliveryMethod="async") for seed in range(10, 16)]
    generations = run_concurrently(backend, mode, requests)
    assert [generation.seeds for generation in generations] == [[seed] for seed in range(10, 16)]
    assert [generation.request.taskUUID for generation in generations] == [r.taskUUID for r in requests]
    sent = poll_posts(proxy)
    polled = {task_uuid for post in sent for task_uuid in post}
    assert polled == {request.taskUUID for request in requests}
    assert len(sent) < len(requests)  # shared: fewer POSTs than tasks
    assert max(len(post) for post in sent) > 1


@pytest.mark.parametrize("mode", MODES)
def test_a_429_on_a_shared_poll_is_waited_out_by_every_caller_in_it(mode, engine, wide_proxy):
    proxy = wide_proxy
    engine.delay = 0.2
    backend = backend_for(proxy)
    call(backend, mode, "generate", prompt(seed=1))
    throttled = {"errors": [{"code": "rateLimitExceeded", "message": "slow down"}]}
    proxy.inject(
        Fault("delay", delay=0.3, task_type="getResponse"),  # the others' polls pile up behind this one...
        Fault("status", status=429, body=throttled, task_type="getResponse"),  # ...and their shared POST is refused
    )
    requests = [prompt(seed=seed, deliveryMethod="async") for seed in range(20, 24)]
    generations = run_concurrently(backend, mode, requests)
    assert [generation.seeds for generation in generations] == [[seed] for seed in range(20, 24)]
    sent = poll_posts(proxy)
    refused = sent[1]
    assert len(refused) > 1  # it was shared
    for task_uuid in refused:  # every caller in it polled again after the 429, none gave up
        assert sum(task_uuid in post for post in sent) >= 2
    assert "status" in proxy.faults_used()


def test_a_lone_caller_polls_at_once_and_alone(make_backend, proxy):
    backend = make_backend()
    generation = backend.generate(prompt(seed=4, deliveryMethod="async"))
    assert generation.seeds == [4]
    assert all(len(post) == 1 for post in poll_posts(proxy))


# -- the server: hints from the schedule, a poll just before the finish waits for it ----------------------------------
def acknowledge(url: str, request: ImageInferenceRequest) -> dict:
    import httpx

    body = [{**request.to_wire(), "deliveryMethod": "async"}]
    return httpx.post(url + "/v1", json=body, headers={"Authorization": f"Bearer {KEY}"}).json()["data"][0]


def measure(url: str) -> None:
    """One sync generation, so the server has measured its engine and its acknowledgements carry a hint."""
    with RunwareBackend(KEY, base_url=url, timeout=10) as backend:
        backend.generate(prompt(seed=1))


def get_response(url: str, task_uuid: str, key: str = KEY):
    import httpx

    body = [{"taskType": "getResponse", "taskUUID": task_uuid}]
    return httpx.post(url + "/v1", json=body, headers={"Authorization": f"Bearer {key}"})


def test_a_job_queued_behind_a_running_one_is_expected_after_its_remaining_time_not_a_whole_round():
    latency = 1.0
    engine = StubEngine(delay=latency)
    with ServerThread(create_app(engine, api_keys=[KEY], max_concurrency=1)) as server:
        measure(server.url)  # about 1 s a job
        first = acknowledge(server.url, prompt(seed=2))
        assert first[EXPECTED_SECONDS_FIELD] == pytest.approx(latency, rel=0.2)
        time.sleep(latency / 2)  # the first job is halfway through
        second = acknowledge(server.url, prompt(seed=3))
        # One GPU: it starts when the first ends (about 0.5 s from now), then takes its own 1 s; not 2 s.
        assert second[EXPECTED_SECONDS_FIELD] == pytest.approx(latency * 1.5, abs=0.25)
        # Asked while it waits, the server says how long is left, and that it holds a poll that comes a little early.
        (waiting,) = get_response(server.url, second["taskUUID"]).json()["data"]
        assert waiting["status"] == "processing"
        assert waiting[EXPECTED_SECONDS_FIELD] == pytest.approx(latency * 1.5, abs=0.25)
        assert waiting[POLL_WAIT_FIELD] == second[POLL_WAIT_FIELD] > 0


def test_a_poll_that_arrives_just_before_the_expected_finish_gets_the_result():
    latency = 0.5
    engine = StubEngine(delay=latency)
    app = create_app(engine, api_keys=["other-key", KEY], max_concurrency=2)
    app.state.kandinsky.poll_wait = 1.0  # generous, so a loaded test machine cannot make the job miss it
    with ServerThread(app) as server:
        measure(server.url)
        ack = acknowledge(server.url, prompt(seed=2))
        assert ack[POLL_WAIT_FIELD] == 1.0
        time.sleep(latency - 0.3)  # 0.3 s early
        # Another key's poll of the same task is answered at once, as for a task that does not exist: waiting
        # for it would tell that the task exists and when it ends.
        started = time.monotonic()
        assert get_response(server.url, ack["taskUUID"], key="other-key").status_code == 404
        assert time.monotonic() - started < 0.15
        answer = get_response(server.url, ack["taskUUID"])
        assert answer.status_code == 200
        (item,) = answer.json()["data"]
        assert item["status"] == "success" and item["imageURL"]


def test_a_server_told_not_to_hold_polls_does_not_say_it_does():
    engine = StubEngine(delay=0.3)
    app = create_app(engine, api_keys=[KEY], poll_wait=0)  # kandinsky-nb serve --poll-wait 0
    with ServerThread(app) as server:
        measure(server.url)
        ack = acknowledge(server.url, prompt(seed=2))
        assert EXPECTED_SECONDS_FIELD in ack and POLL_WAIT_FIELD not in ack
        (item,) = get_response(server.url, ack["taskUUID"]).json()["data"]
        assert item["status"] == "processing"  # answered at once


def test_a_poll_long_before_the_expected_finish_is_answered_at_once():
    engine = StubEngine(delay=1.0)
    with ServerThread(create_app(engine, api_keys=[KEY])) as server:
        measure(server.url)
        ack = acknowledge(server.url, prompt(seed=2))
        started = time.monotonic()
        (item,) = get_response(server.url, ack["taskUUID"]).json()["data"]
        assert time.monotonic() - started < 0.2  # not held: the cloud answers at once too
        assert item["status"] == "processing" and item[EXPECTED_SECONDS_FIELD] > 0.7


@pytest.mark.parametrize("mode", MODES)
def test_async_tasks_poll_once_at_the_expected_finish_against_the_hinting_server(mode):
    engine = StubEngine(delay=0.2)
    with ServerThread(create_app(engine, api_keys=[KEY], max_concurrency=4)) as server:
        backend = RunwareBackend(KEY, base_url=server.url, timeout=10, retry_policy=FAST)
        call(backend, mode, "generate", prompt(seed=1))
        for seed in range(2, 5):
            generation = call(backend, mode, "generate", prompt(seed=seed, deliveryMethod="async"))
            assert generation.seeds == [seed] and generation.details["polls"] == 1
        backend.close()


def test_the_sync_poll_line_hands_over_when_the_sender_fails():
    # A thread whose POST raises (not a transport error: those are answers) must not leave the others waiting.
    from kandinsky_nb.backends.runware import _PollLine

    line = _PollLine()
    release = threading.Event()
    calls: list[int] = []

    def send(post: Post):
        calls.append(len(post.tasks))
        if len(calls) == 1:
            release.wait(5)
            raise RuntimeError("boom")
        return reply({"data": [result(task["taskUUID"]) for task in post.tasks]})

    outcomes: dict[str, object] = {}

    def poll(task_uuid: str) -> None:
        try:
            outcomes[task_uuid] = line.post(polls(task_uuid), send)
        except RuntimeError as exc:
            outcomes[task_uuid] = exc

    first = threading.Thread(target=poll, args=("A",))
    first.start()
    while not calls:
        time.sleep(0.001)
    others = [threading.Thread(target=poll, args=(name,)) for name in ("B", "C")]
    for thread in others:
        thread.start()
    time.sleep(0.05)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert isinstance(outcomes["A"], RuntimeError)
    assert calls == [1, 2]  # B and C went together, after A's failure
    for name in ("B", "C"):
        assert classify(outcomes[name]).envelope.items == [result(name)]


def test_a_cancelled_caller_leaves_the_async_poll_line_working_for_the_others():
    from kandinsky_nb.backends.runware import _AsyncPollLine

    async def scenario() -> tuple[list[int], dict]:
        line = _AsyncPollLine(asyncio.get_running_loop())
        first_sent = asyncio.Event()
        release = asyncio.Event()
        sizes: list[int] = []

        async def send(post: Post):
            sizes.append(len(post.tasks))
            first_sent.set()
            await release.wait()
            return reply({"data": [result(task["taskUUID"]) for task in post.tasks]})

        first = asyncio.create_task(line.post(polls("A"), send))
        await first_sent.wait()
        waiting = {name: asyncio.create_task(line.post(polls(name), send)) for name in ("B", "C", "D")}
        await asyncio.sleep(0)
        waiting["C"].cancel()  # its caller gave up while its poll waited in line
        release.set()
        answers = {"A": await first}
        for name in ("B", "D"):
            answers[name] = await waiting[name]
        return sizes, answers

    sizes, answers = asyncio.run(scenario())
    assert sizes == [1, 3]  # B, C and D went together (C's answer is dropped: nobody waits for it)
    for name, answer in answers.items():
        assert classify(answer).envelope.items == [result(name)]


def test_an_interrupted_sender_answers_the_others_and_the_line_keeps_working():
    # Ctrl-C lands in the thread that is sending the shared POST: the others must not wait forever for its answer.
    from kandinsky_nb.backends.runware import _PollLine

    line = _PollLine()
    sending = threading.Event()
    release = threading.Event()
    calls: list[list[str]] = []

    def send(post: Post):
        calls.append([task["taskUUID"] for task in post.tasks])
        if len(calls) == 1:
            sending.set()
            release.wait(5)
            raise KeyboardInterrupt
        return reply({"data": [result(task["taskUUID"]) for task in post.tasks]})

    outcomes: dict[str, object] = {}

    def poll(task_uuid: str) -> None:
        try:
            outcomes[task_uuid] = line.post(polls(task_uuid), send)
        except KeyboardInterrupt as exc:
            outcomes[task_uuid] = exc

    first = threading.Thread(target=poll, args=("A",))
    first.start()
    sending.wait(5)
    second = threading.Thread(target=poll, args=("B",))
    second.start()
    time.sleep(0.05)
    release.set()
    for thread in (first, second):
        thread.join(5)
    assert not first.is_alive() and not second.is_alive()
    assert isinstance(outcomes["A"], KeyboardInterrupt)
    assert classify(outcomes["B"]).envelope.items == [result("B")]  # B polled again on its own
    after = line.post(polls("C"), send)  # and the line still works
    assert classify(after).envelope.items == [result("C")]


def test_a_poll_post_with_a_ready_result_is_not_held_for_a_running_one():
    # Shared polls: one task done, one still running and due within the hold. The done one must not wait.
    import httpx

    latency = 1.0
    engine = StubEngine(delay=latency)
    app = create_app(engine, api_keys=[KEY], max_concurrency=2, poll_wait=1.0)
    with ServerThread(app) as server:
        measure(server.url)
        done = acknowledge(server.url, prompt(seed=2))
        time.sleep(latency + 0.2)
        running = acknowledge(server.url, prompt(seed=3))
        time.sleep(0.3)  # 0.7 s before its expected finish: within the hold (1 s)
        body = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]} for task in (done, running)]
        started = time.monotonic()
        answer = httpx.post(server.url + "/v1", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert time.monotonic() - started < 0.45  # not held until the running one ends (about 0.7 s)
        statuses = {item["taskUUID"]: item["status"] for item in answer.json()["data"]}
        assert statuses == {done["taskUUID"]: "success", running["taskUUID"]: "processing"}
