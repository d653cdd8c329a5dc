"""Local engine costs on the CPU: import time, and one demo generation against the bare diffusers call.

    .venv/bin/python benchmarks/bench_local.py [--repeats 5]

Prints CPU seconds (process time, all threads) and wall seconds for:

1. ``import kandinsky_nb.backends.local`` plus what its first use loads (torch + diffusers + the Kandinsky 5 pipeline
   class), each in a fresh process, against a fresh process importing only torch + diffusers + that class (baseline),
   and the package alone (it defers torch, so panels can read the scheduler table cheaply);
2. one demo generation of a 1024x1024 request at the demo scale (rendered 128x128, 20 steps, CFG), through
   ``LocalBackend.generate`` against the bare ``Kandinsky5T2IPipeline`` call with the same settings on the same
   weights and thread count (baseline). The ratio is the engine's overhead (planning, seeding, encoding the image).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_ENGINE = """
import time
c, w = time.process_time(), time.perf_counter()
import kandinsky_nb.backends.local as local
from kandinsky_nb.backends.local import import_local_stack
torch, diffusers = import_local_stack()
diffusers.Kandinsky5T2IPipeline
print(time.process_time() - c, time.perf_counter() - w)
"""
IMPORT_PACKAGE_ONLY = """
import time
c, w = time.process_time(), time.perf_counter()
import sys, kandinsky_nb.backends.local
assert "torch" not in sys.modules
print(time.process_time() - c, time.perf_counter() - w)
"""
IMPORT_BARE = """
import time
c, w = time.process_time(), time.perf_counter()
import torch, diffusers
diffusers.Kandinsky5T2IPipeline
print(time.process_time() - c, time.perf_counter() - w)
"""


def fresh_process(code: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def timed_pair(first, second, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (CPU, wall) seconds of two functions, run alternately so load drift on a shared machine hits both."""
    samples: list[list[tuple[float, float]]] = [[], []]
    for _ in range(repeats):
        for index, fn in enumerate((first, second)):
            c, w = time.process_time(), time.perf_counter()
            fn()
            samples[index].append((time.process_time() - c, time.perf_counter() - w))
    return tuple(  # type: ignore[return-value]
        (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs)) for runs in samples
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    print("== import (fresh process each, median of 3) ==")
    engine_imports = [fresh_process(IMPORT_ENGINE) for _ in range(3)]
    bare_imports = [fresh_process(IMPORT_BARE) for _ in range(3)]
    e_cpu, e_wall = (statistics.median(x) for x in zip(*engine_imports, strict=True))
    b_cpu, b_wall = (statistics.median(x) for x in zip(*bare_imports, strict=True))
    print(f"kandinsky_nb.backends.local + torch + diffusers: {e_cpu:6.2f} s CPU  {e_wall:6.2f} s wall")
    print(f"baseline torch + diffusers only:                 {b_cpu:6.2f} s CPU  {b_wall:6.2f} s wall")
    print(f"ratio engine/baseline:                           {e_cpu / b_cpu:6.2f} x CPU  {e_wall / b_wall:6.2f} x wall")
    o_cpu, o_wall = (
        statistics.median(x) for x in zip(*[fresh_process(IMPORT_PACKAGE_ONLY) for _ in range(3)], strict=True)
    )
    print(f"kandinsky_nb.backends.local alone (no torch yet): {o_cpu:6.2f} s CPU  {o_wall:6.2f} s wall")

    import torch
    from diffusers import Kandinsky5T2IPipeline

    from kandinsky_nb.backends.local import DEMO_SCALE, LocalBackend, build_demo_weights
    from kandinsky_nb.backends.local.stack import quiet_progress
    from kandinsky_nb.types import ImageInferenceRequest

    with tempfile.TemporaryDirectory() as folder:
        c, w = time.process_time(), time.perf_counter()
        weights = build_demo_weights(Path(folder))
        print(f"\n== demo weights build: {time.process_time() - c:.2f} s CPU  {time.perf_counter() - w:.2f} s wall ==")
        backend = LocalBackend.from_demo_weights(weights)
        request = ImageInferenceRequest(positivePrompt="a red fox in snow", seed=1, width=1024, height=1024)
        details = backend.generate(request).details  # loads the pipeline; not timed

        with quiet_progress():
            pipe = Kandinsky5T2IPipeline.from_pretrained(weights / "t2i", local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        width, height = details["pixel_size"]
        pipe.resolutions = [(width, height)]
        call = details["call"]
        threads = torch.get_num_threads()

        def bare() -> None:
            torch.set_num_threads(backend.cpu_threads or threads)  # the same thread count as the engine uses
            pipe(**call, generator=torch.Generator().manual_seed(1)).image[0]
            torch.set_num_threads(threads)

        bare()
        (g_cpu, g_wall), (p_cpu, p_wall) = timed_pair(lambda: backend.generate(request), bare, args.repeats)

    steps, cfg = call["num_inference_steps"], call["guidance_scale"]
    print(
        f"\n== one generation: 1024x1024 request at demo scale {DEMO_SCALE:g} -> {width}x{height}, {steps} steps, "
        f"CFG {cfg:g}, {backend.cpu_threads} thread(s), median of {args.repeats} =="
    )
    print(f"LocalBackend.generate (JPG encoded):  {g_cpu:6.3f} s CPU  {g_wall:6.3f} s wall")
    print(f"baseline bare pipeline call (PIL):    {p_cpu:6.3f} s CPU  {p_wall:6.3f} s wall")
    print(f"ratio engine/baseline:                {g_cpu / p_cpu:6.2f} x CPU  {g_wall / p_wall:6.2f} x wall")


if __name__ == "__main__":
    main()
