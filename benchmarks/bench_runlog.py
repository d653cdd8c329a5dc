"""Run-log figures: append rate vs bare SQLite, DataFrame reads at 100k and 1M rows, filters, score columns, memory.

    .venv/bin/python benchmarks/bench_runlog.py [--rows 100000] [--big-rows 1000000] [--repeats 3] [--appends 2000]
                                                [--sweep 1000] [--only memory|append|dataframe|big ...]

Every figure is printed next to a baseline measured in the same run (reads interleaved, median and best of
``--repeats``):
- append: RunLog's submitted + ok rows per image (two short transactions, image file written with its metadata)
  against a bare ``INSERT`` of one row per transaction on an identical WAL database;
- DataFrame: ``RunLog.df`` (typed columns, derived size/megapixels) against a bare ``pandas.read_sql_query`` of the
  same table, on a realistic log generated inside SQLite (unique times and taskUUIDs, wire JSON, 2% failures);
- filters: ``RunLog.query(sweep_id=...)`` and ``(prompt_contains=...)`` against ``df`` filtered in pandas, with the
  query plans that show the indexes used;
- score columns: ``df`` with 3 metrics per image against the bare read and against the pandas pivot it replaced;
- big frame: ``RunLog.df`` and the bare reader at 1,000,000 rows, each in a fresh process (seconds, peak RSS); where
  ``adbc-driver-sqlite`` is installed (not a dependency), also the ADBC driver's bare ``fetch_arrow_table`` of the
  table: the floor of an Arrow-native reader, for the record of why the run log does not use one in process;
- memory: resident-set growth over a 1,000-cell sweep run through Session on an in-process engine that makes
  small PNGs (no model), so what grows is the toolkit's own state.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from PIL import Image

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.runlog import RunLog
from kandinsky_nb.runlog.migrations import migrate
from kandinsky_nb.session import Session
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

if TYPE_CHECKING:
    import pandas as pd


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


# A realistic log, generated inside SQLite (a million rows in seconds): unique times and taskUUIDs, the real wire
# request and response JSON, 500 prompts, the 7 sizes, sweeps of 1,000 cells, one request in 50 failed (NULL image,
# cost and finish time, an error). Inserted through the table's triggers, so the prompt index is built as in use.
FILL_SQL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :rows),
cells AS (
    SELECT i, lower(hex(randomblob(16))) AS task, lower(hex(randomblob(16))) AS image, i % 50 = 49 AS failed,
           json_extract(:sizes, '$[' || (i % 7) || '][0]') AS width, json_extract(:sizes, '$[' || (i % 7) || '][1]') AS height
    FROM n
),
uuids AS (
    SELECT *, substr(task, 1, 8) || '-' || substr(task, 9, 4) || '-4' || substr(task, 14, 3) || '-a' || substr(task, 18, 3)
              || '-' || substr(task, 21, 12) AS task_uuid,
           printf('%064x', i) AS sha,
           strftime('%Y-%m-%dT%H:%M:%S', '2026-11-25', '+' || i || ' seconds') || printf('.%06d+00:00', i * 7919 % 1000000) AS created,
           strftime('%Y-%m-%dT%H:%M:%S', '2026-11-25', '+' || (i + 3) || ' seconds') || printf('.%06d+00:00', i * 104729 % 1000000) AS finished
    FROM cells
)
INSERT INTO runs (created_utc, finished_utc, status, engine, demo, model, task_uuid, result_index, number_results,
                  prompt, width, height, steps, CFGScale, scheduler, seed, error_type, error_code, error_message,
                  latency_s, cost_usd, image_path, image_sha256, image_uuid, image_format, sweep_id, sweep_cell,
                  request_json, response_json, toolkit_version)
SELECT created, CASE WHEN failed THEN NULL ELSE finished END, CASE WHEN failed THEN 'failed' ELSE 'ok' END,
       'runware', 0, :model, task_uuid, 0, 1,
       'a red fox in snow, oil painting, study ' || (i % 500), width, height, 10 + i % 40, 3 + (i % 9) * 0.5,
       CASE i % 3 WHEN 0 THEN 'Euler' WHEN 1 THEN 'UniPC' ELSE 'DPM++ 2M' END, i,
       CASE WHEN failed THEN 'TaskError' END, CASE WHEN failed THEN 'invalidPositivePrompt' END,
       CASE WHEN failed THEN 'the engine refused the prompt' END,
       2 + (i % 100) / 100.0, CASE WHEN failed THEN NULL ELSE 0.0077 END,
       CASE WHEN failed THEN NULL ELSE 'images/' || substr(sha, 1, 2) || '/' || sha || '.jpg' END,
       CASE WHEN failed THEN NULL ELSE sha END, CASE WHEN failed THEN NULL ELSE image END,
       CASE WHEN failed THEN NULL ELSE 'jpg' END,
       's' || (i / 1000), json_object('seed', i % 10, 'steps', 10 + i % 40),
       json_set(:request, '$.taskUUID', task_uuid, '$.seed', i, '$.steps', 10 + i % 40, '$.width', width, '$.height', height,
                '$.positivePrompt', 'a red fox in snow, oil painting, study ' || (i % 500)),
       CASE WHEN failed THEN json_object('code', 'invalidPositivePrompt', 'message', 'the engine refused the prompt')
            ELSE json_object('taskType', 'imageInference', 'taskUUID', task_uuid, 'imageUUID', image, 'seed', i,
                             'cost', 0.0077, 'imageURL', 'https://im.runware.ai/image/ws/2/ii/' || image || '.jpg') END,
       '0.1.0'
FROM uuids
"""
SCORES_SQL = """
INSERT INTO metrics (image_sha256, metric, reference, scorer_version, value, run_id, computed_utc)
SELECT image_sha256, metric, '', '1', abs(random()) / 9.3e18, id, created_utc
FROM runs, (SELECT 'ssim' AS metric UNION ALL SELECT 'psnr' UNION ALL SELECT 'sharpness')
WHERE image_sha256 IS NOT NULL
"""


def fill(log: RunLog, rows: int, *, scores: bool = False) -> float:
    """Write ``rows`` realistic rows (and 3 scores per image) into the log's database; returns the seconds it took."""
    from kandinsky_nb import spec

    template = ImageInferenceRequest(positivePrompt="a red fox in snow", steps=28, CFGScale=7.5, seed=1)
    params = {
        "rows": rows,
        "model": template.model,
        "sizes": json.dumps([[size.width, size.height] for size in spec.SIZES]),
        "request": json.dumps(template.to_wire()),
    }
    started = time.perf_counter()
    with log._lock:  # bulk load for the benchmark only
        log._db.execute("BEGIN")
        log._db.execute(FILL_SQL, params)
        if scores:
            log._db.execute(SCORES_SQL)
        log._db.execute("COMMIT")
        # Into the database file, as SQLite's automatic checkpoints would have done during a real log's growth.
        log._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


def bare_read(path: Path) -> pd.DataFrame:
    """The baseline: pandas' own reader over a plain connection, every column, no typing."""
    import pandas as pd

    with closing(sqlite3.connect(path)) as db:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY id", db)


def adbc_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("adbc_driver_sqlite", "adbc_driver_manager", "pyarrow"))


def adbc_bare_read(path: Path) -> object:
    """The ADBC SQLite driver alone: every row of the table into one Arrow table (untyped, no pandas).

    Only ever in a process that opens no sqlite3 connection to the file: the driver's wheel carries its own copy of
    SQLite, and two copies in one process break each other's POSIX locks (closing the driver's connection deleted the
    -wal and -shm files under an open sqlite3 connection; benchmarks/RESULTS.md)."""
    import adbc_driver_sqlite.dbapi

    with adbc_driver_sqlite.dbapi.connect(str(path)) as db, db.cursor() as cursor:
        cursor.execute("SELECT * FROM runs ORDER BY id")
        return cursor.fetch_arrow_table()


def bare_read_with_pivot(path: Path) -> pd.DataFrame:
    """The score columns as the log built them until this change: a bare read of runs, every stored score read in
    long form, the newest per (image, metric) kept in pandas, pivoted and joined on the image's sha256."""
    import pandas as pd

    with closing(sqlite3.connect(path)) as db:
        frame = pd.read_sql_query("SELECT * FROM runs ORDER BY id", db)
        scored = pd.read_sql_query("SELECT image_sha256, metric, value FROM metrics ORDER BY computed_utc, rowid", db)
    newest = scored.drop_duplicates(["image_sha256", "metric"], keep="last")
    wide = newest.pivot(index="image_sha256", columns="metric", values="value").astype(float)
    wide.columns = ["score_" + str(name) for name in wide.columns]
    return frame.join(wide, on="image_sha256")


class Timings(NamedTuple):
    """Seconds of one reader over the repeats: on the wall clock, and of CPU, this process's and its children's (what
    the reader itself costs, the Arrow reader's own process included; on a shared machine the wall clock also counts
    the time other processes held the cores)."""

    wall: list[float]
    cpu: list[float]


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the Arrow reader's process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(readers: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timings]:
    """Each reader, ``repeats`` times, interleaved (A B A B ...), so a change in the machine's load hits every reader
    alike."""
    timings = {name: Timings([], []) for name in readers}
    for _ in range(repeats):
        for name, read in readers.items():
            gc.collect()
            wall, cpu = time.perf_counter(), cpu_seconds()
            result = read()
            timings[name].cpu.append(cpu_seconds() - cpu)
            timings[name].wall.append(time.perf_counter() - wall)
            del result
    return timings


def line(name: str, timings: Timings, baseline: Timings | None = None) -> str:
    median = statistics.median
    text = (
        f"{name}: CPU median {median(timings.cpu):.3f} s (best {min(timings.cpu):.3f} s), "
        f"wall median {median(timings.wall):.3f} s (best {min(timings.wall):.3f} s)"
    )
    if baseline:
        text += (
            f"; {median(timings.cpu) / median(baseline.cpu):.2f}x the baseline's CPU median, "
            f"{median(timings.wall) / median(baseline.wall):.2f}x its wall median"
        )
    return text


def bench_dataframe(folder: Path, rows: int, repeats: int) -> None:
    log = RunLog(folder / "big")
    fill_seconds = fill(log, rows)
    print(f"dataframe: {rows:,} rows written in {fill_seconds:.1f} s (through the prompt index's triggers)")
    in_process = RunLog(log.home, reader="sqlite3")
    readers = {"bare": lambda: bare_read(log.path), "df": lambda: in_process.df}
    if adbc_available():
        arrow = RunLog(log.home, reader="adbc")
        readers["arrow"] = lambda: arrow.df
    times = timed(readers, repeats)
    print("  " + line("bare pandas.read_sql_query (baseline)", times["bare"]))
    print("  " + line("RunLog.df, sqlite3 reader (what 'auto' uses below ARROW_MIN_ROWS)", times["df"], times["bare"]))
    if "arrow" in times:
        print("  " + line("RunLog.df, Arrow reader in its own process", times["arrow"], times["bare"]))
    frame, bare = log.df, bare_read(log.path)
    print(
        f"  frame {frame.memory_usage(deep=True).sum() / 2**20:.0f} MiB ({len(frame):,} rows, typed; "
        f"bare {bare.memory_usage(deep=True).sum() / 2**20:.0f} MiB); database {database_mib(log.path):.0f} MiB"
    )
    del frame, bare

    sweep, prompt = f"s{rows // 2000}", "study 123"
    queries = {
        "df, then pandas keeps one sweep": lambda: (lambda f: f[f["sweep_id"] == sweep])(log.df),
        "RunLog.query(sweep_id=...)": lambda: log.query(sweep_id=sweep),
        "df, then pandas keeps a prompt substring": lambda: (lambda f: f[f["prompt"].str.contains(prompt)])(log.df),
        "RunLog.query(prompt_contains=...)": lambda: log.query(prompt_contains=prompt),
    }
    times = timed(queries, repeats)
    names = list(queries)
    for baseline, name in ((names[0], names[1]), (names[2], names[3])):
        print("  " + line(f"{baseline} (baseline)", times[baseline]))
        print("  " + line(name, times[name], times[baseline]))
    print(
        f"  rows: one sweep {len(log.query(sweep_id=sweep)):,}, prompt substring {len(log.query(prompt_contains=prompt)):,}"
    )
    print(f"  plan, sweep: {log.query_plan(sweep_id=sweep)}")
    print(f"  plan, prompt: {log.query_plan(prompt_contains=prompt)}")

    with log._lock:
        log._db.execute("BEGIN")
        log._db.execute(SCORES_SQL)
        log._db.execute("COMMIT")
        log._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    scored = len(log.metrics(metric="ssim"))
    times = timed(
        {
            "bare": lambda: bare_read(log.path),
            "pivot": lambda: bare_read_with_pivot(log.path),
            "df": lambda: log.df,
        },
        repeats,
    )
    print(f"scores: 3 metrics x {scored:,} images")
    print("  " + line("bare pandas.read_sql_query of runs (baseline)", times["bare"]))
    print("  " + line("bare read + the pandas pivot df used before (baseline)", times["pivot"], times["bare"]))
    print("  " + line("RunLog.df with 3 score columns", times["df"], times["bare"]))
    print(
        f"  RunLog.df with scores takes {statistics.median(times['df'].cpu) / statistics.median(times['pivot'].cpu):.2f}x "
        "the former pivot's CPU time"
    )
    log.close()


def bench_big_frame(folder: Path, rows: int) -> None:
    """A log of ``rows`` rows read by RunLog.df and by the bare reader, each in a fresh process, so each process's
    peak resident memory (VmHWM) is its reader's own."""
    log = RunLog(folder / "huge")
    fill_seconds = fill(log, rows)
    log.close()
    print(f"big frame: {rows:,} rows written in {fill_seconds:.1f} s; database {database_mib(log.path):.0f} MiB")
    readers = ("bare", "df-sqlite3", "df", "adbc") if adbc_available() else ("bare", "df-sqlite3")
    for reader in readers * 2:
        result = subprocess.run(
            [sys.executable, __file__, "--read-once", reader, str(log.home)], capture_output=True, text=True, check=True
        )
        print("  " + result.stdout.strip())


def read_once(reader: str, home: Path) -> None:
    """One read in this (fresh) process: seconds, peak RSS over the start, frame size."""
    import pandas as pd

    if reader == "adbc":
        adbc_read_once(home / "runs.db")
        return
    # "df": what a user gets (reader "auto": the Arrow reader in its own process for a log this big, where the `fast`
    # extra is installed); "df-sqlite3": the in-process reader.
    log = RunLog(home, reader="sqlite3" if reader == "df-sqlite3" else "auto")
    # Warm both readers' code (first-use imports inside pandas and pyarrow), so the read below is the read alone.
    log.query(limit=1)
    with closing(sqlite3.connect(log.path)) as db:
        pd.read_sql_query("SELECT * FROM runs LIMIT 1", db)
    if log.reader == "auto":
        import pyarrow.ipc  # noqa: F401  (imported by any earlier read in a notebook)
    gc.collect()
    before = rss_mib()
    wall, cpu = time.perf_counter(), cpu_seconds()
    frame = bare_read(log.path) if reader == "bare" else log.df
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    name = {"bare": "bare pandas.read_sql_query", "df": "RunLog.df (auto)", "df-sqlite3": "RunLog.df (sqlite3)"}[reader]
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"{name}: {len(frame):,} rows in {cpu:.2f} s CPU, its reader process included ({wall:.2f} s wall, load "
        f"average {os.getloadavg()[0]:.1f}); peak RSS +{peak_rss_mib() - before:,.0f} MiB over the process before "
        f"the read{f' (reader process: {child:,.0f} MiB peak)' if child else ''}, "
        f"frame {frame.memory_usage(deep=True).sum() / 2**20:,.0f} MiB"
    )


def adbc_read_once(path: Path) -> None:
    """The ADBC floor in this (fresh) process, which opens no other connection to the file (see adbc_bare_read)."""
    import adbc_driver_sqlite.dbapi

    with adbc_driver_sqlite.dbapi.connect(":memory:") as db, db.cursor() as cursor:  # warm the driver's code
        cursor.execute("SELECT 1")
        cursor.fetch_arrow_table()
    gc.collect()
    before = rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    table = adbc_bare_read(path)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"bare ADBC fetch_arrow_table (untyped Arrow, no pandas): {table.num_rows:,} rows in {cpu:.2f} s CPU "
        f"({wall:.2f} s wall, load average {os.getloadavg()[0]:.1f}); peak RSS +{peak_rss_mib() - before:,.0f} MiB "
        f"over the process before the read, table {table.nbytes / 2**20:,.0f} MiB"
    )


def database_mib(path: Path) -> float:
    wal = Path(str(path) + "-wal")
    return (path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 2**20


def peak_rss_mib() -> float:
    for line_text in Path("/proc/self/status").read_text().splitlines():
        if line_text.startswith("VmHWM:"):
            return int(line_text.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="0 skips the big-frame figure")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each read")
    parser.add_argument("--sweep", type=int, default=1000)
    parser.add_argument("--only", choices=["memory", "append", "dataframe", "big"], action="append")
    parser.add_argument("--read-once", nargs=2, metavar=("READER", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read_once:
        read_once(args.read_once[0], Path(args.read_once[1]))
        return
    only = set(args.only or ["memory", "append", "dataframe", "big"])
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, pandas {pandas_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as folder:
        if "memory" in only:
            bench_memory(Path(folder), args.sweep)  # first, before the big DataFrame inflates the process
        if "append" in only:
            bench_append(Path(folder), args.appends)
        if "dataframe" in only:
            bench_dataframe(Path(folder), args.rows, args.repeats)
        if "big" in only and args.big_rows:
            bench_big_frame(Path(folder), args.big_rows)


def pandas_version() -> str:
    import pandas as pd

    return pd.__version__


if __name__ == "__main__":
    main()
