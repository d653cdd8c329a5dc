"""Benchmark `kandinsky-nb serve`'s memory over many requests with uploads: the in-memory store's caps keep it flat.

The server runs in a process of its own (its RSS is what is measured) on an engine that answers at once with a small
PNG, so the store, not the model, is measured. Each request is ONE POST holding an ``imageUpload`` of fresh bytes (a
128x128 noise PNG, about 49 KB, never seen before) and an ``imageInference`` that uses the upload as its
``seedImage``: every request adds an upload, a generated image and a finished task to the store.

Two stores are measured side by side, in the same run and on the same requests:
  * bounded: the default MemoryTaskStore with small caps (--image-mb, --task-mb), so warm-up fills them early;
  * baseline: the same store with caps too large to reach (nothing is evicted until the ttl: the old behaviour).
RSS is sampled every --every requests; "flat" is the growth from the end of warm-up to the end.

Warm-up is the requests it takes to fill the caps: images (~700 requests at 32 MiB), finished tasks (~1,900 at
2 MiB) and the remembered UUIDs of evicted images (4,096: ~2,100 requests evict two images each).

Run: .venv/bin/python benchmarks/bench_serve_memory.py [--requests 10000 --image-mb 32 --task-mb 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import numpy as np
import psutil
from PIL import Image

KEY = "bench-key"
MODEL = "runware:kandinsky-5.0-image-lite@1"
UNREACHABLE = 1 << 50  # a cap no run reaches: the baseline store never evicts


def serve(image_bytes: int, task_bytes: int) -> None:
    """The child process: serve on a free port, print the URL, run until terminated."""
    from kandinsky_nb.backends.base import Backend
    from kandinsky_nb.server import MemoryTaskStore, ServerThread, create_app
    from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceResult

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 90, 200)).save(buffer, format="PNG")
    answer = buffer.getvalue()

    class InstantEngine(Backend):
        name = "instant"

        async def agenerate(self, request):
            result = ImageInferenceResult(taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=1, cost=0.0)
            return Generation(request, [GeneratedImage(result, answer)], self.name, 0.0)

        def generate(self, request):
            return asyncio.run(self.agenerate(request))

    store = MemoryTaskStore(max_image_bytes=image_bytes, max_task_bytes=task_bytes, max_images=UNREACHABLE)
    with ServerThread(create_app(InstantEngine(), api_keys=[KEY], max_concurrency=8, store=store)) as server:
        print(server.url, flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def server_process(image_bytes: int, task_bytes: int):
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(image_bytes), str(task_bytes)], stdout=subprocess.PIPE, text=True
    )
    try:
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the benchmark server did not start (it printed {url!r})")
        yield url, psutil.Process(child.pid)
    finally:
        child.terminate()
        child.wait(timeout=30)


def fresh_png(rng: np.random.Generator) -> bytes:
    """128x128 RGB noise: incompressible, so about 49 KB, and different every time."""
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def body(image: bytes) -> list[dict]:
    upload_uuid = str(uuid.uuid4())
    return [
        {"taskType": "imageUpload", "taskUUID": upload_uuid, "image": base64.b64encode(image).decode()},
        {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "model": MODEL,
            "positivePrompt": "a red fox in snow",
            "seedImage": "data:image/png;base64," + base64.b64encode(image).decode(),
            "strength": 0.5,
        },
    ]


async def drive(url: str, process: psutil.Process, requests: int, every: int, concurrency: int) -> list[tuple]:
    """Send the requests; (requests done, RSS MiB, seconds) every ``every`` requests."""
    rng = np.random.default_rng(7)
    samples = [(0, process.memory_info().rss / 2**20, 0.0)]
    started = time.perf_counter()
    sent = 0
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as client:

        async def one() -> None:
            answer = await client.post(url + "/v1", json=body(fresh_png(rng)))
            answer.raise_for_status()

        while sent < requests:
            batch = min(every, requests - sent)
            for start in range(0, batch, concurrency):
                await asyncio.gather(*(one() for _ in range(min(concurrency, batch - start))))
            sent += batch
            samples.append((sent, process.memory_info().rss / 2**20, time.perf_counter() - started))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500, help="requests between RSS samples")
    parser.add_argument("--warmup", type=int, default=3_000, help="requests before the flatness is judged")
    parser.add_argument("--image-mb", type=int, default=32, help="the bounded store's image cap (MiB)")
    parser.add_argument("--task-mb", type=int, default=2, help="the bounded store's finished-task cap (MiB)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve(*args.serve)
        return

    runs = {
        f"bounded (images {args.image_mb} MiB, tasks {args.task_mb} MiB)": (args.image_mb << 20, args.task_mb << 20),
        "baseline (no cap reached)": (UNREACHABLE, UNREACHABLE),
    }
    results = {}
    for label, caps in runs.items():
        with server_process(*caps) as (url, process):
            results[label] = asyncio.run(drive(url, process, args.requests, args.every, args.concurrency))

    print(f"{args.requests} requests, each one POST with an imageUpload (~49 KB of fresh bytes) and an imageInference")
    print(f"using it as seedImage; server RSS in MiB every {args.every} requests (pid {os.getpid()} drives)")
    for label, samples in results.items():
        warm = next(rss for done, rss, _ in samples if done >= args.warmup)
        end, seconds = samples[-1][1], samples[-1][2]
        print(f"\n{label}: {args.requests / seconds:.0f} requests/s")
        print("  requests " + " ".join(f"{done:>6}" for done, _, _ in samples))
        print("  RSS MiB  " + " ".join(f"{rss:6.0f}" for _, rss, _ in samples))
        print(
            f"  after warm-up ({args.warmup} requests): {warm:.0f} MiB -> {end:.0f} MiB at the end: "
            f"{end - warm:+.0f} MiB ({(end - warm) / (args.requests - args.warmup) * 1024:+.1f} KiB per request)"
        )


if __name__ == "__main__":
    main()
