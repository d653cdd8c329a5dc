"""Quality scoring speed: 1,000 demo-size images through the download-free scorers, against the 30 s goal.

    .venv/bin/python benchmarks/bench_quality.py [--images 1000] [--side 128] [--cores 2]

A sweep of ``--images`` synthetic images (``--side`` pixels square: the demo engine renders a 1024x1024 request at
an eighth, 128x128) is logged in a fresh run log; then ``score_sweep`` scores it with SSIM, PSNR, sharpness and
colourfulness, storing every score. Printed next to it, measured in the same run:
- the bare scorers over the same images already decoded (what the computing costs without the run log);
- a second ``score_sweep`` of the same sweep (everything cached: what asking again costs).
The process is pinned to ``--cores`` CPUs (the goal is stated for 2), so a bigger machine does not flatter it.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import tempfile
import time
import uuid

import numpy as np
from PIL import Image

from kandinsky_nb.analysis.scoring import score_sweep
from kandinsky_nb.quality import as_rgb, download_free_scorers
from kandinsky_nb.runlog import RunLog
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

GOAL_S = 30.0
SCHEDULERS = ("Euler", "Euler a", "UniPC", "DPM++ 2M Karras", "Euler Trailing")


def picture(seed: int, steps: int, side: int) -> np.ndarray:
    """A seed's picture plus noise that shrinks as steps grow (none at 50): images that converge, as a sweep's do."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC), dtype=float)
    noise = np.random.default_rng(seed * 1000 + steps).normal(0, (50 - steps) * 1.5, smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def log_sweep(runs: RunLog, count: int, side: int) -> None:
    """``count`` images over seeds x steps x CFG x scheduler, each with the seed's 50-step image as its reference."""
    cells = itertools.product(range(1, 1000), (10, 20, 30, 40, 50), (3.0, 5.0), SCHEDULERS)
    for seed, steps, cfg, scheduler in itertools.islice(cells, count):
        request = ImageInferenceRequest(
            positivePrompt="a red fox in snow",
            width=1024,
            height=1024,
            steps=steps,
            CFGScale=cfg,
            scheduler=scheduler,
            seed=seed,
        )
        result = ImageInferenceResult(taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=seed, cost=0.0)
        generation = Generation(request, [GeneratedImage(result, png(picture(seed, steps, side)))], "bench", 0.0)
        cell = f'{{"CFGScale":{cfg},"scheduler":"{scheduler}","seed":{seed},"steps":{steps}}}'
        runs.record_generation(generation, sweep_id="bench", sweep_cell=cell)


def bare_scorers(paths: list[str], references: list[str]) -> float:
    """The scorers alone over pre-decoded images: the floor of what scoring can cost."""
    images = [as_rgb(path) for path in paths]
    decoded_references = {path: as_rgb(path) for path in set(references)}
    scorers = download_free_scorers()
    started = time.perf_counter()
    for image, reference in zip(images, references, strict=True):
        for scorer in scorers:
            scorer.score(image, reference=decoded_references[reference])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cores)
    print(f"pinned to {len(cores)} CPU(s); Python {sys.version.split()[0]}; numpy {np.__version__}")

    with tempfile.TemporaryDirectory() as home, RunLog(home) as runs:
        started = time.perf_counter()
        log_sweep(runs, args.images, args.side)
        print(f"logged {args.images} images of {args.side}x{args.side} in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        frame = score_sweep(runs, "bench")
        scoring = time.perf_counter() - started
        scores = len(download_free_scorers()) * args.images
        assert frame.attrs["scoring"].computed == scores, frame.attrs["scoring"]

        started = time.perf_counter()
        cached = score_sweep(runs, "bench")
        again = time.perf_counter() - started
        assert cached.attrs["scoring"].computed == 0

        by_id = dict(zip(frame["id"], frame["image_path"], strict=True))
        references = [by_id[int(r)] for r in frame["reference_id"]]
        bare = bare_scorers(list(frame["image_path"]), references)

    rate = args.images / scoring
    verdict = "meets" if scoring <= GOAL_S * args.images / 1000 else "MISSES"
    print(f"score_sweep, {args.images} images x 4 scorers, stored: {scoring:.2f} s = {rate:,.0f} images/s")
    print(
        f"  goal: 1,000 images in {GOAL_S:.0f} s on 2 cores -> {verdict} it ({scoring / args.images * 1000:.1f} s per 1,000)"
    )
    print(
        f"  bare scorers over decoded images: {bare:.2f} s = {args.images / bare:,.0f} images/s (ratio {scoring / bare:.2f}x)"
    )
    print(f"  asking again (all cached): {again:.2f} s")


if __name__ == "__main__":
    main()
