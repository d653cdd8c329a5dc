"""Run-log figures: append rate vs bare SQLite, DataFrame load at 100k rows, memory over a 1,000-image sweep.

    .venv/bin/python benchmarks/bench_runlog.py [--rows 100000] [--appends 2000] [--sweep 1000]

Every figure is printed next to a baseline measured in the same run:
- append: RunLog's submitted + ok rows per image (two short transactions, image file written with its metadata)
  against a bare ``INSERT`` of one row per transaction on an identical WAL database;
- DataFrame: ``RunLog.df`` (typed columns, derived size/megapixels) against a bare ``pandas.read_sql_query``;
- memory: resident-set growth over a 1,000-cell sweep run through Session on an in-process engine that makes
  small PNGs (no model), so what grows is the toolkit's own state.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import sqlite3
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from PIL import Image

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.runlog import RunLog
from kandinsky_nb.runlog.migrations import migrate
from kandinsky_nb.session import Session
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (seed % 256, seed * 7 % 256, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def generation(request: ImageInferenceRequest) -> Generation:
    seed = request.seed or 0
    result = ImageInferenceResult(taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=seed, cost=0.0077)
    return Generation(request, [GeneratedImage(result, png(seed))], "bench", 0.001)


class PngEngine(Backend):
    """An in-process engine for the memory figure: a 64x64 PNG per request, no model."""

    name = "bench"

    def generate(self, request: ImageInferenceRequest) -> Generation:
        return generation(request)

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        return generation(request)


def run_columns(db: sqlite3.Connection) -> list[str]:
    """The ``runs`` columns as the migrations built them (the id is the database's to give)."""
    return [row[1] for row in db.execute("PRAGMA table_info(runs)") if row[1] != "id"]


def insert_sql(columns: list[str]) -> str:
    """A plain INSERT of one ``runs`` row from a dict of column values: the baseline the run log's upsert is timed
    against, and the benchmark's bulk loader."""
    names = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO runs ({names}) VALUES ({', '.join(f':{c}' for c in columns)})"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_append(folder: Path, count: int) -> None:
    log = RunLog(folder / "append")
    requests = [ImageInferenceRequest(positivePrompt="a red fox in snow", seed=i, steps=20) for i in range(count)]
    started = time.perf_counter()
    for request in requests:
        log.record_submitted(
            request, engine="bench", demo=False, sweep_id="bench", sweep_cell=json.dumps({"seed": request.seed})
        )
        log.record_generation(generation(request), sweep_id="bench", sweep_cell=json.dumps({"seed": request.seed}))
    runlog_seconds = time.perf_counter() - started
    log.close()

    bare = sqlite3.connect(folder / "bare.db", isolation_level=None)
    bare.execute("PRAGMA journal_mode = WAL")
    bare.execute("PRAGMA synchronous = NORMAL")
    migrate(bare)  # the same table and indexes as the run log's
    columns = run_columns(bare)
    insert = insert_sql(columns)
    row: dict[str, object] = dict.fromkeys(columns)
    row.update(  # the NOT NULL columns of a submitted row
        status="submitted",
        engine="bench",
        demo=0,
        model="runware:kandinsky-5.0-image-lite@1",
        result_index=0,
        number_results=1,
        created_utc="2026-11-25T12:00:00",
        request_json="{}",
    )
    started = time.perf_counter()
    for i in range(count):
        row["task_uuid"] = str(i)
        bare.execute("BEGIN IMMEDIATE")
        bare.execute(insert, row)
        bare.execute("COMMIT")
    bare_seconds = time.perf_counter() - started
    # The same work in SQL as RunLog does per image: insert the submitted row, then update it in a second transaction.
    update = "UPDATE runs SET status = 'ok' WHERE task_uuid = ?"
    started = time.perf_counter()
    for i in range(count):
        row["task_uuid"] = f"two-{i}"
        bare.execute("BEGIN IMMEDIATE")
        bare.execute(insert, row)
        bare.execute("COMMIT")
        bare.execute("BEGIN IMMEDIATE")
        bare.execute(update, (f"two-{i}",))
        bare.execute("COMMIT")
    two_seconds = time.perf_counter() - started
    bare.close()
    print(f"append: RunLog {count / runlog_seconds:,.0f} images/s (submitted + ok rows, PNG with metadata written)")
    print(f"        bare sqlite {count / bare_seconds:,.0f} rows/s (one INSERT per transaction, same WAL settings)")
    print(f"        bare sqlite, insert + update in two transactions: {count / two_seconds:,.0f} images/s")
    print(
        f"        RunLog costs {bare_seconds and runlog_seconds / bare_seconds:.1f}x the bare insert per image "
        f"({runlog_seconds / count * 1000:.2f} ms vs {bare_seconds / count * 1000:.3f} ms)"
    )


def bench_dataframe(folder: Path, rows: int) -> None:
    import pandas as pd

    log = RunLog(folder / "big")
    template = ImageInferenceRequest(positivePrompt="a red fox in snow, oil painting", steps=28, CFGScale=7.5, seed=1)
    wire = json.dumps(template.to_wire())
    columns = run_columns(log._db)
    batch = []
    for i in range(rows):
        row = dict.fromkeys(columns)
        row.update(
            {
                "created_utc": "2026-11-25T12:00:00.000000+00:00",
                "finished_utc": "2026-11-25T12:00:01.000000+00:00",
                "status": "ok",
                "engine": "runware",
                "demo": 0,
                "model": template.model,
                "task_uuid": str(uuid.uuid4()),
                "result_index": 0,
                "number_results": 1,
                "prompt": template.positivePrompt,
                "width": 1024,
                "height": 1024,
                "steps": 10 + i % 40,
                "CFGScale": 7.5,
                "scheduler": "Euler",
                "seed": i,
                "latency_s": 3.2,
                "cost_usd": 0.0077,
                "image_path": f"images/ab/{i:064x}.jpg",
                "image_sha256": f"{i:064x}",
                "sweep_id": f"s{i // 1000}",
                "sweep_cell": json.dumps({"seed": i}),
                "request_json": wire,
                "response_json": "{}",
                "toolkit_version": "0.1.0",
            }
        )
        batch.append(row)
    with log._lock:  # bulk load for the benchmark only
        log._db.execute("BEGIN")
        log._db.executemany(insert_sql(columns), batch)
        log._db.execute("COMMIT")
    del batch
    gc.collect()
    started = time.perf_counter()
    frame = log.df
    runlog_seconds = time.perf_counter() - started
    started = time.perf_counter()
    bare = pd.read_sql_query("SELECT * FROM runs ORDER BY id", sqlite3.connect(log.path))
    bare_seconds = time.perf_counter() - started
    size = (
        (log.path.stat().st_size + Path(str(log.path) + "-wal").stat().st_size) / 2**20
        if Path(str(log.path) + "-wal").exists()
        else log.path.stat().st_size / 2**20
    )
    print(
        f"dataframe: RunLog.df {len(frame):,} rows in {runlog_seconds:.2f} s; bare read_sql_query {len(bare):,} rows "
        f"in {bare_seconds:.2f} s ({runlog_seconds / bare_seconds:.2f}x); database {size:.0f} MiB, "
        f"frame {frame.memory_usage(deep=True).sum() / 2**20:.0f} MiB"
    )
    log.close()


def bench_memory(folder: Path, cells: int) -> None:
    session = Session(PngEngine(), home=folder / "sweep")
    warm = session.sweep("a red fox in snow", name="warm", seed="1-20")
    warm.run(progress=False)
    gc.collect()
    before = rss_mib()
    tracemalloc.start()
    plan = session.sweep("a red fox in snow", name="big", seed=f"1-{cells}", steps=[20])
    planned = rss_mib()
    planned_py = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    report = asyncio.run(plan.arun(concurrency=4, progress=False))
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_mib()
    after_py, peak_py = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"memory: {report.ok:,}-image sweep in {seconds:.1f} s ({report.ok / seconds:,.0f} images/s end to end); "
        f"RSS {before:.0f} MiB before, +{planned - before:.1f} MiB for the plan, +{after - planned:.1f} MiB after running "
        f"({(after - planned) * 1024 / max(report.ok, 1):.1f} KiB per image; images are not kept in memory)"
    )
    print(
        f"        Python heap (tracemalloc): plan {planned_py / 2**20:.1f} MiB, after the run {after_py / 2**20:.1f} MiB "
        f"(+{(after_py - planned_py) / 2**10:.0f} KiB), peak {peak_py / 2**20:.1f} MiB"
    )
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sweep", type=int, default=1000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory() as folder:
        bench_memory(Path(folder), args.sweep)  # first, before the big DataFrame inflates the process
        bench_append(Path(folder), args.appends)
        bench_dataframe(Path(folder), args.rows)


if __name__ == "__main__":
    main()
