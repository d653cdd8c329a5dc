"""Benchmark the Runware client against `kandinsky-nb serve` on 127.0.0.1 with an engine of fixed latency L.

Figures printed:
  * N concurrent agenerate() calls (bounded by a client semaphore of C): wall time vs the ideal ceil(N/C) x L;
  * one agenerate_many() batch of N tasks in ONE POST: wall time vs the ideal L;
  * sync and async deliveries;
  * the client's overhead per request: RunwareBackend.generate() vs a bare httpx POST of the same task body, with
    L = 0, and the pure protocol layer alone (the conversation driven by a canned answer, no I/O).

Run: .venv/bin/python benchmarks/bench_runware.py [--n 32 --concurrency 8 --latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import math
import statistics
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

    batch = requests(n, **fields)
    started = time.perf_counter()
    results = await asyncio.gather(*(one(r) for r in batch))
    wall = time.perf_counter() - started
    assert all(len(g.images) == 1 for g in results)
    return wall


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
    parser.add_argument("--n", type=int, default=32, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="client-side concurrency limit")
    parser.add_argument("--latency", type=float, default=0.2, help="engine latency L in seconds")
    args = parser.parse_args()
    n, c, latency = args.n, args.concurrency, args.latency

    with ServerThread(create_app(LatencyEngine(latency), api_keys=[KEY], max_concurrency=n)) as server:

        async def run_all() -> list[tuple[str, float, float]]:
            rows = []
            async with RunwareBackend(KEY, base_url=server.url, timeout=60) as backend:
                await backend.agenerate(requests(1)[0])  # warm the connection pool
                ideal = math.ceil(n / c) * latency
                rows.append(
                    (f"{n} x agenerate, concurrency {c}, sync delivery", await concurrent(backend, n, c), ideal)
                )
                rows.append(
                    (
                        f"{n} x agenerate, concurrency {c}, async delivery",
                        await concurrent(backend, n, c, deliveryMethod="async"),
                        ideal,
                    )
                )
                rows.append((f"agenerate_many({n}) in one POST, sync delivery", await batched(backend, n), latency))
                rows.append(
                    (
                        f"agenerate_many({n}) in one POST, async delivery",
                        await batched(backend, n, deliveryMethod="async"),
                        latency,
                    )
                )
            return rows

        rows = asyncio.run(run_all())
        print(f"engine latency L = {latency:.3f} s, N = {n}, client concurrency C = {c}")
        print(f"{'scenario':55} {'wall s':>8} {'ideal s':>8} {'ratio':>6}")
        for label, wall, ideal in rows:
            print(f"{label:55} {wall:8.3f} {ideal:8.3f} {wall / ideal:6.2f}")
        print("(async delivery includes the first getResponse poll, which waits 0.5 s by policy)")

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
