"""Benchmark the Runware client against `kandinsky-nb serve` on 127.0.0.1 with an engine of fixed latency L, side by
side with Runware's own SDK (`runware-sdk`, REST transport) on the same server in the same run.

Figures printed:
  * N concurrent requests (bounded by a client semaphore of C), sync and async delivery, for kandinsky_nb's
    ``RunwareBackend.agenerate`` and the SDK's ``Runware.run``: wall time vs the ideal ceil(N/C) x L, getResponse
    polls per task and the POSTs that carried them per task (counted by the server: concurrent kandinsky_nb calls
    share their poll POSTs);
  * one agenerate_many() batch of N tasks in ONE POST: wall time vs the ideal L;
  * the client's overhead per request: RunwareBackend.generate() vs a bare httpx POST of the same task body, with
    L = 0, and the pure protocol layer alone (the conversation driven by a canned answer, no I/O).

Both clients ask for base64Data, so both end with the image bytes in hand and neither downloads.
Goals (issue 14): async wall/ideal <= 1.15 and sync <= 1.10 at N=96, C=16, L=0.2, with <= 3 polls per task.

Run: .venv/bin/python benchmarks/bench_runware.py [--n 96 --concurrency 16 --latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import math
import signal
import statistics
import subprocess
import sys
import time
import uuid

import httpx
from PIL import Image

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.protocol import FlowConfig, Post, Reply, conversation, inference_task
from kandinsky_nb.server import ServerThread, create_app
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

KEY = "bench-key"
MODEL = "runware:kandinsky-5.0-image-lite@1"
ASYNC_GOAL, SYNC_GOAL, POLLS_GOAL = 1.15, 1.10, 3.0


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 20)).save(buffer, format="JPEG")
    return buffer.getvalue()


class LatencyEngine(Backend):
    """An engine that takes exactly ``latency`` seconds (asyncio.sleep) and returns one small JPEG per image."""

    name = "latency"

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.image = _jpeg()

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        await asyncio.sleep(self.latency)
        images = [
            GeneratedImage(
                ImageInferenceResult(taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=1, cost=0.001),
                self.image,
            )
            for _ in range(request.effective("numberResults"))
        ]
        return Generation(request, images, self.name, self.latency)

    def generate(self, request: ImageInferenceRequest) -> Generation:
        return asyncio.run(self.agenerate(request))


def requests(n: int, **fields) -> list[ImageInferenceRequest]:
    return [ImageInferenceRequest(positivePrompt="a red fox in snow", seed=i, **fields) for i in range(n)]


async def concurrent(backend: RunwareBackend, n: int, concurrency: int, **fields) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(request: ImageInferenceRequest) -> Generation:
        async with gate:
            return await backend.agenerate(request)

    batch = requests(n, outputType="base64Data", **fields)
    started = time.perf_counter()
    results = await asyncio.gather(*(one(r) for r in batch))
    wall = time.perf_counter() - started
    assert all(len(g.images) == 1 for g in results)
    return wall


async def sdk_concurrent(client, n: int, concurrency: int, delivery: str) -> float:
    """The same N requests through Runware's own SDK (``runware.Runware.run``), C at a time."""
    gate = asyncio.Semaphore(concurrency)
    params = [
        {
            "taskType": "imageInference",
            "model": MODEL,
            "positivePrompt": "a red fox in snow",
            "seed": i,
            "deliveryMethod": delivery,
            "outputType": "base64Data",
            "includeCost": True,
        }
        for i in range(n)
    ]

    async def one(task: dict) -> list:
        async with gate:
            return await client.run(task)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in params))
    wall = time.perf_counter() - started
    assert all(len(r) == 1 and r[0]["imageBase64Data"] for r in results)
    return wall


POLLS_PATH = "/bench/polls"


class PollCounter:
    """ASGI middleware in front of the server: counts the getResponse tasks in every POST body, and the POSTs that
    carried any, and answers ``GET /bench/polls`` with the counts since the last such GET, so polls per task are read
    from outside the server's process, whatever client sent them."""

    def __init__(self, app) -> None:
        self.app = app
        self.count = 0
        self.posts = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == POLLS_PATH:
            body = json.dumps({"getResponse": self.count, "posts": self.posts}).encode()
            self.count = self.posts = 0
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return None
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        polls = body.count(b"getResponse")
        self.count += polls
        self.posts += polls > 0
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


@contextlib.contextmanager
def server_process(latency: float, max_concurrency: int):
    """The server in a process of its own, as it runs in production: it must not share this process's GIL (and so
    its CPU) with the clients being measured. Yields its base URL."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(latency), str(max_concurrency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the benchmark server did not start (it printed {url!r})")
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


def serve_forever(latency: float, max_concurrency: int) -> None:
    app = create_app(LatencyEngine(latency), api_keys=[KEY], max_concurrency=max_concurrency)
    with ServerThread(PollCounter(app)) as server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGTERM, signal.SIGINT})


def polls_per_task(url: str, n: int) -> tuple[float, float]:
    """getResponse tasks the server received since the last call, per task, and the POSTs that carried them."""
    counts = httpx.get(url + POLLS_PATH).json()
    return counts["getResponse"] / n, counts["posts"] / n


async def batched(backend: RunwareBackend, n: int, **fields) -> float:
    batch = requests(n, **fields)
    started = time.perf_counter()
    results = await backend.agenerate_many(batch)
    wall = time.perf_counter() - started
    assert all(isinstance(g, Generation) for g in results)
    return wall


def overhead(url: str, repeats: int) -> tuple[float, float]:
    """Median seconds per request: RunwareBackend.generate vs a bare httpx POST of the same body (engine L = 0)."""
    backend = RunwareBackend(KEY, base_url=url, timeout=30)
    raw = httpx.Client(timeout=30)
    ours, bare = [], []
    for request in requests(repeats, outputType="base64Data"):
        started = time.perf_counter()
        backend.generate(request)
        ours.append(time.perf_counter() - started)
        body = [inference_task(request.replace())]
        started = time.perf_counter()
        response = raw.post(url + "/v1", json=body, headers={"Authorization": f"Bearer {KEY}"})
        base64.b64decode(response.json()["data"][0]["imageBase64Data"])
        bare.append(time.perf_counter() - started)
    backend.close()
    raw.close()
    return statistics.median(ours[3:]), statistics.median(bare[3:])


def pure_protocol_cost(repeats: int) -> float:
    """Seconds per request spent in the protocol layer alone (validation excluded): build the task, parse the answer,
    decode the image, build the Generation."""
    image = base64.b64encode(_jpeg()).decode()
    batch = requests(repeats, outputType="base64Data")
    answers = [
        Reply(
            200,
            json.dumps(
                {
                    "data": [
                        {
                            "taskType": "imageInference",
                            "taskUUID": r.taskUUID,
                            "imageUUID": "u",
                            "imageBase64Data": image,
                            "seed": 1,
                            "cost": 0.001,
                        }
                    ]
                }
            ).encode(),
        )
        for r in batch
    ]
    started = time.perf_counter()
    for request, answer in zip(batch, answers, strict=True):
        flow = conversation([request], config=FlowConfig())
        action = next(flow)
        assert isinstance(action, Post)
        with contextlib.suppress(StopIteration):  # the conversation ends after this one answer
            flow.send(answer)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="client-side concurrency limit")
    parser.add_argument("--latency", type=float, default=0.2, help="engine latency L in seconds")
    parser.add_argument("--rounds", type=int, default=3, help="measured passes (the median is printed)")
    parser.add_argument("--serve", nargs=2, metavar=("LATENCY", "SLOTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:  # the child process of server_process()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_forever(float(args.serve[0]), int(args.serve[1]))
        return
    n, c, latency, rounds = args.n, args.concurrency, args.latency, args.rounds
    try:
        import runware
    except ImportError:
        runware = None  # the SDK is in the test extra; without it only our client is measured

    with server_process(latency, n) as url:

        async def run_all() -> list[tuple[str, float, float, float, float]]:
            ideal = math.ceil(n / c) * latency
            async with contextlib.AsyncExitStack() as stack:
                backend = await stack.enter_async_context(RunwareBackend(KEY, base_url=url, timeout=60))
                scenarios = [
                    (f"kandinsky_nb, {d} delivery", ideal, lambda d=d: concurrent(backend, n, c, deliveryMethod=d))
                    for d in ("sync", "async")
                ]
                if runware is not None:
                    sdk = runware.Runware(api_key=KEY, transport="rest", http_base_url=url + "/v1")
                    client = await stack.enter_async_context(sdk)
                    scenarios += [
                        (f"runware-sdk, {d} delivery", ideal, lambda d=d: sdk_concurrent(client, n, c, d))
                        for d in ("sync", "async")
                    ]
                scenarios += [
                    (
                        f"kandinsky_nb agenerate_many({n}), one POST, {d}",
                        latency,
                        lambda d=d: batched(backend, n, deliveryMethod=d),
                    )
                    for d in ("sync", "async")
                ]
                # One unrecorded pass warms both ends (connection pools, the server's code paths and latency hint),
                # then the scenarios take turns, so a busy moment of the machine does not land on one client only.
                walls: dict[str, list[float]] = {label: [] for label, *_ in scenarios}
                polls: dict[str, list[tuple[float, float]]] = {label: [] for label, *_ in scenarios}
                for round_number in range(rounds + 1):
                    for label, _, run in scenarios:
                        polls_per_task(url, 1)
                        wall = await run()
                        if round_number:
                            walls[label].append(wall)
                            polls[label].append(polls_per_task(url, n))
            return [
                (
                    label,
                    statistics.median(walls[label]),
                    best,
                    statistics.mean(tasks for tasks, _ in polls[label]),
                    statistics.mean(posts for _, posts in polls[label]),
                )
                for label, best, _ in scenarios
            ]

        rows = asyncio.run(run_all())
        print(f"engine latency L = {latency:.3f} s, N = {n}, client concurrency C = {c}, ideal = ceil(N/C) x L")
        print(f"median wall of {rounds} passes after a warm-up pass; polls and poll POSTs per task: their mean")
        print(f"{'scenario':52} {'wall s':>8} {'ideal s':>8} {'ratio':>6} {'polls/task':>10} {'POSTs/task':>10}")
        for label, wall, ideal, polls, posts in rows:
            print(f"{label:52} {wall:8.3f} {ideal:8.3f} {wall / ideal:6.2f} {polls:10.2f} {posts:10.2f}")
        if runware is None:
            print("(runware-sdk is not installed: pip install 'kandinsky-nb[test]' to measure it side by side)")
        ratios = {label: wall / ideal for label, wall, ideal, *_ in rows}
        async_polls = next(polls for label, _, _, polls, _ in rows if label == "kandinsky_nb, async delivery")
        goals = [
            ("async wall/ideal", ratios["kandinsky_nb, async delivery"], ASYNC_GOAL),
            ("sync wall/ideal", ratios["kandinsky_nb, sync delivery"], SYNC_GOAL),
            ("async polls per task", async_polls, POLLS_GOAL),
        ]
        for name, value, goal in goals:
            print(f"goal {name:22} {value:6.2f} <= {goal:.2f}: {'met' if value <= goal else 'NOT met'}")

    with ServerThread(create_app(LatencyEngine(0.0), api_keys=[KEY], max_concurrency=4)) as server:
        ours, bare = overhead(server.url, 40)
    pure = pure_protocol_cost(500)
    print()
    print("client overhead per request (L = 0, sequential, median):")
    print(f"  RunwareBackend.generate      {ours * 1e3:7.2f} ms")
    print(f"  bare httpx POST + decode     {bare * 1e3:7.2f} ms")
    print(f"  overhead                     {(ours - bare) * 1e3:7.2f} ms  ({ours / bare:.2f}x the bare call)")
    print(f"  pure protocol layer alone    {pure * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
