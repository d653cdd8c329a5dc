"""Benchmark a 1,000-cell sweep run through the Session with the run log on, against `kandinsky-nb serve` on
127.0.0.1 with an engine of fixed latency L, beside the same requests sent bare in the same run.

Scenarios (each on a fresh run log in a temporary folder, or a copy of a prefilled one with ``--prefill``; every cell
logged with its image file, and ``plan.estimate()`` called before the run, as the README's notebook does):
  * baseline: the sweep's N requests through a bare ``RunwareBackend.agenerate`` under a semaphore of C, nothing
    logged;
  * ``await plan.arun(concurrency=C)``: the sweep through the Session's asyncio runner;
  * the thread runner's floor: the same requests through a bare ``RunwareBackend.generate`` on C threads, no log;
  * ``plan.run(concurrency=C)``: the sweep through the Session's thread runner (what a notebook cell runs);
all with sync delivery, and with async delivery too unless ``--deliveries sync``. Each is timed on the wall clock
and in CPU seconds of this (the client's) process; the server runs in a process of its own.

Figures printed: wall time, ideal = ceil(N/C) x L, wall/ideal, wall/baseline, client CPU per cell; and the run log's
own cost per cell (``record_submitted`` + ``record_generation`` with the image file, one cell after another, no
network). Goal (issue 14): a sweep of 1,000 cells with logging at <= 1.10x ideal (sync delivery).

Run: .venv/bin/python benchmarks/bench_sweep.py [--cells 1000 --concurrency 16 --latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_runware import KEY, LatencyEngine, server_process

from kandinsky_nb import Session
from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.runlog import RunLog
from kandinsky_nb.runlog.store import DB_NAME
from kandinsky_nb.session import SweepPlan
from kandinsky_nb.types import Generation, ImageInferenceRequest

GOAL = 1.10
BASELINE = "baseline: bare agenerate under a semaphore, no log"
PROMPT = "a red fox in snow, golden hour"


def plan_of(session: Session, cells: int, delivery: str, name: str) -> SweepPlan:
    """A sweep of ``cells`` cells: CFG scale x seed when ``cells`` is a multiple of 10, else seeds alone."""
    if cells % 10 == 0 and cells >= 20:
        axes = {"CFGScale": [round(2 + 0.5 * i, 1) for i in range(10)], "seed": list(range(cells // 10))}
    else:
        axes = {"seed": list(range(cells))}
    return session.sweep(PROMPT, name=name, deliveryMethod=delivery, max_cells=max(cells, 10_000), **axes)


def open_session(url: str, home: str, concurrency: int) -> Session:
    return Session("runware", api_key=KEY, base_url=url, home=home, concurrency=concurrency)


class Timed:
    """Wall and CPU seconds (this process, every thread) of one scenario."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.estimate = 0.0  # seconds of plan.estimate() just before (a session's first fit of its cost model)

    def __enter__(self) -> Timed:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


async def bare(url: str, requests: list[ImageInferenceRequest], concurrency: int) -> Timed:
    """The baseline: the same requests through RunwareBackend.agenerate, C at a time, nothing logged."""
    gate = asyncio.Semaphore(concurrency)
    async with RunwareBackend(KEY, base_url=url) as backend:

        async def one(request: ImageInferenceRequest) -> Generation:
            async with gate:
                return await backend.agenerate(request)

        with Timed() as timed:
            results = await asyncio.gather(*(one(r.replace()) for r in requests))
    assert all(len(g.images) == 1 and g.images[0].data for g in results)
    return timed


def check_logged(session: Session, plan: SweepPlan, cells: int) -> None:
    """Every cell has its ok row and its image file."""
    status = plan.status()
    assert status.get("ok") == cells, status
    rows = session.runs.sweep_rows(plan.name)
    assert len(rows) == cells and all(row["status"] == "ok" for row in rows)
    home = Path(session.runs.home)
    assert all((home / row["image_path"]).is_file() for row in rows)


def prefilled(home: str, template: Path | None) -> str:
    """``home``, holding a copy of the prefilled log ``template`` (a runs.db) when there is one."""
    if template is not None:
        shutil.copyfile(template, Path(home) / DB_NAME)
    return home


def estimated_plan(session: Session, cells: int, delivery: str) -> tuple[SweepPlan, float]:
    """The sweep's plan, and the seconds of its ``estimate()``, called before running it as the README does: on a
    big log that is where a session first fits its cost model (timed apart from the run)."""
    plan = plan_of(session, cells, delivery, f"bench-{delivery}")
    started = time.perf_counter()
    plan.estimate()
    return plan, time.perf_counter() - started


async def session_async(
    url: str, cells: int, concurrency: int, delivery: str, progress: bool, template: Path | None = None
) -> Timed:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as home:
        prefilled(home, template)
        async with open_session(url, home, concurrency) as session:
            plan, estimated = estimated_plan(session, cells, delivery)
            with Timed() as timed:
                report = await plan.arun(concurrency, progress=progress)
            timed.estimate = estimated
            assert report.ok == cells, report
            check_logged(session, plan, cells)
    return timed


def session_threads(
    url: str, cells: int, concurrency: int, delivery: str, progress: bool, template: Path | None = None
) -> Timed:
    with (
        tempfile.TemporaryDirectory(prefix="bench-sweep-") as home,
        open_session(url, prefilled(home, template), concurrency) as session,
    ):
        plan, estimated = estimated_plan(session, cells, delivery)
        with Timed() as timed:
            report = plan.run(concurrency, progress=progress)
        timed.estimate = estimated
        assert report.ok == cells, report
        check_logged(session, plan, cells)
    return timed


def logging_alone(cells: int) -> tuple[float, float]:
    """Seconds (wall, CPU) per cell of the run log alone: the submitted row, then the image file and the ok row, one
    cell after another on a fresh log, with the engine's JPEG (no network)."""
    engine = LatencyEngine(0.0)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-log-") as home, RunLog(home) as runs:
        requests = [ImageInferenceRequest(positivePrompt=PROMPT, seed=i, CFGScale=4.0) for i in range(cells)]
        generations = [asyncio.run(engine.agenerate(r)) for r in requests]
        with Timed() as timed:
            for index, (request, generation) in enumerate(zip(requests, generations, strict=True)):
                cell = f"seed={index}"
                runs.record_submitted(request, engine="runware", demo=False, sweep_id="alone", sweep_cell=cell)
                runs.record_generation(generation, sweep_id="alone", sweep_cell=cell)
    return timed.wall / cells, timed.cpu / cells


def bare_threads(url: str, requests: list[ImageInferenceRequest], concurrency: int) -> Timed:
    """The floor of the thread runner: the same requests through RunwareBackend.generate on C threads, no log."""
    with RunwareBackend(KEY, base_url=url) as backend, ThreadPoolExecutor(concurrency) as pool, Timed() as timed:
        results = list(pool.map(backend.generate, [r.replace() for r in requests]))
    assert all(len(g.images) == 1 and g.images[0].data for g in results)
    return timed


def prefill_template(folder: Path, rows: int) -> Path | None:
    """A run log of ``rows`` realistic rows (bench_runlog's generator: 98% ok runware runs), to copy under each
    sweep; None for a sweep on an empty log."""
    if rows <= 0:
        return None
    from bench_runlog import fill

    with RunLog(folder) as runs:
        fill(runs, rows)
    return folder / DB_NAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1000, help="cells of the sweep (requests)")
    parser.add_argument("--concurrency", type=int, default=16, help="client-side concurrency limit C")
    parser.add_argument("--latency", type=float, default=0.2, help="engine latency L in seconds")
    parser.add_argument("--rounds", type=int, default=1, help="measured passes (the median is printed)")
    parser.add_argument("--deliveries", default="sync,async", help="deliveryMethod values to measure")
    parser.add_argument("--prefill", type=int, default=0, help="rows already in the run log under each sweep")
    parser.add_argument("--progress", action="store_true", help="show the sweeps' progress bars (as notebooks do)")
    args = parser.parse_args()
    cells, c, latency, rounds = args.cells, args.concurrency, args.latency, args.rounds
    deliveries = [d.strip() for d in args.deliveries.split(",") if d.strip()]
    ideal = math.ceil(cells / c) * latency

    with server_process(latency, max(c, 16)) as url, tempfile.TemporaryDirectory() as scratch:
        template = prefill_template(Path(scratch) / "prefilled", args.prefill)
        with open_session(url, Path(scratch) / "plans", c) as session:  # the requests the sweeps send
            requests = {d: [cell.request for cell in plan_of(session, cells, d, f"plan-{d}")] for d in deliveries}
        scenarios: list[tuple[str, str, Callable[[], Timed]]] = []
        for d in deliveries:
            scenarios += [
                (d, BASELINE, lambda d=d: asyncio.run(bare(url, requests[d], c))),
                (d, f"Session sweep, await plan.arun({c})", lambda d=d: asyncio.run(sweep_async(url, d, template))),
                (d, f"baseline (threads): bare generate on {c} threads", lambda d=d: bare_threads(url, requests[d], c)),
                (d, f"Session sweep, plan.run({c}) (threads)", lambda d=d: sweep_threads(url, d, template)),
            ]

        async def sweep_async(url: str, d: str, template: Path | None) -> Timed:
            return await session_async(url, cells, c, d, args.progress, template)

        def sweep_threads(url: str, d: str, template: Path | None) -> Timed:
            return session_threads(url, cells, c, d, args.progress, template)

        timings: dict[tuple[str, str], list[Timed]] = {(d, label): [] for d, label, _ in scenarios}
        loads: list[float] = []
        started_load = os.getloadavg()
        # One unrecorded small pass warms both ends (connection pools, the server's code paths and its latency hint);
        # then the scenarios take turns, so a busy moment of the machine does not land on one only.
        warm = min(cells, 4 * c)
        for d in deliveries:
            asyncio.run(bare(url, requests[d][:warm], c))
            asyncio.run(session_async(url, warm, c, d, False))
        for _ in range(rounds):
            for d, label, run in scenarios:
                timings[(d, label)].append(run())
                loads.append(os.getloadavg()[0])

    alone_wall, alone_cpu = logging_alone(cells)
    print(f"engine latency L = {latency:.3f} s, N = {cells} cells, client concurrency C = {c}", end="")
    print(f", {args.prefill:,} rows in the run log before each sweep" if args.prefill else ", fresh run log")
    print(f"ideal = ceil(N/C) x L = {ideal:.3f} s; median of {rounds} pass(es) after a warm-up pass")
    print(
        f"load average at start {started_load[0]:.2f} / {started_load[1]:.2f} / {started_load[2]:.2f} (1/5/15 min); "
        f"after each scenario: {', '.join(f'{x:.2f}' for x in loads)}; {os.cpu_count()} CPUs"
    )
    print(f"{'delivery':8} {'scenario':52} {'wall s':>7} {'/ideal':>7} {'/base':>6} {'CPU ms/cell':>11}")
    ratios: dict[tuple[str, str], float] = {}
    for d in deliveries:
        base = statistics.median(t.wall for t in timings[(d, BASELINE)])
        base_cpu = statistics.median(t.cpu for t in timings[(d, BASELINE)])
        for dd, label, _ in scenarios:
            if dd != d:
                continue
            wall = statistics.median(t.wall for t in timings[(d, label)])
            cpu = statistics.median(t.cpu for t in timings[(d, label)])
            ratios[(d, label)] = wall / ideal
            print(f"{d:8} {label:52} {wall:7.3f} {wall / ideal:7.3f} {wall / base:6.3f} {cpu / cells * 1e3:11.2f}")
        session_cpu = statistics.median(t.cpu for t in timings[(d, f"Session sweep, await plan.arun({c})")])
        print(
            f"{d:8} Session + run log, client CPU per cell over the baseline (arun): "
            f"{(session_cpu - base_cpu) / cells * 1e3:.2f} ms"
        )
    estimates = [t.estimate for (_, label), runs in timings.items() if label.startswith("Session") for t in runs]
    print(
        f"plan.estimate() before each Session sweep (not in its wall time; the session's first cost-model fit): "
        f"median {statistics.median(estimates):.3f} s, max {max(estimates):.3f} s"
    )
    print(
        f"run log alone, per cell (submitted row + image file + ok row, one after another, no network): "
        f"{alone_wall * 1e3:.2f} ms wall, {alone_cpu * 1e3:.2f} ms CPU"
    )
    if "sync" in deliveries:
        for label in (lbl for dd, lbl, _ in scenarios if dd == "sync" and lbl.startswith("Session")):
            value = ratios[("sync", label)]
            verdict = "met" if value <= GOAL else "NOT met"
            print(f"goal sweep wall/ideal {value:.3f} <= {GOAL:.2f}: {verdict}  ({label}, sync delivery)")


if __name__ == "__main__":
    main()
