"""The sidebar's first page on a large run log: 50 runs out of 100,000, target under 200 ms.

    .venv/bin/python benchmarks/bench_sidebar.py [--runs 100000] [--repeats 20] [--home DIR]

Builds a run log with the real schema (``RunLog`` runs the migrations) and ``--runs`` synthetic rows (one
executemany; an image file is shared by every ok row), then times, median and worst of ``--repeats``:

1. ``RunLogReader.runs`` in process (a read-only connection, the COUNT and SUM over the filter, the page);
2. the same page over HTTP from a real ``jupyter server`` on 127.0.0.1 with the extension enabled (auth, the
   thread pool, JSON): what the sidebar waits for;
3. filtered pages (a status, a prompt word, a sweep), the revision the live sidebar polls, and a thumbnail
   (first request renders it with Pillow, the next ones come from the cache);
4. a sweep's writes while the sidebar watches: rows logged through ``RunLog`` (the writer a sweep uses) alone, then
   while a client does what a visible sidebar does, 30 times faster (the revision every 0.1 s, the first page each
   time it changes). The ratio is the slowdown a watching sidebar costs a running sweep.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

TOKEN = "bench-sidebar"
WORDS = ("fox", "lighthouse", "whale", "cat", "forest", "city", "snow", "dusk", "ink", "portrait")


def build_log(home: Path, runs: int) -> None:
    from PIL import Image

    from kandinsky_nb.runlog import RunLog

    RunLog(home).close()  # the real schema, migrated
    image = home / "images" / "00" / "bench.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (200, 80, 40)).save(buffer, format="PNG")
    image.write_bytes(buffer.getvalue())
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for index in range(runs):
        ok = rng.random() > 0.05
        prompt = " ".join(rng.choice(WORDS) for _ in range(4))
        request = {"positivePrompt": prompt, "steps": 20, "width": 1024, "height": 1024}
        rows.append(
            (
                (start + timedelta(seconds=30 * index)).isoformat(timespec="microseconds"),
                "ok" if ok else "failed",
                "runware",
                0,
                "runware:kandinsky-5.0-image-lite@1",
                f"00000000-0000-4000-8000-{index:012d}",
                prompt,
                1024,
                1024,
                rng.choice((10, 20, 30)),
                rng.choice((3.0, 5.0, 7.5)),
                rng.randrange(1 << 31),
                0.0006 if ok else None,
                rng.uniform(1, 4),
                "images/00/bench.png" if ok else None,
                f"sweep-{index // 1000}" if index % 3 == 0 else None,
                json.dumps({"steps": 20}) if index % 3 == 0 else None,
                json.dumps(request),
            )
        )
    with sqlite3.connect(home / "runs.db") as db:
        db.executemany(
            "INSERT INTO runs (created_utc, status, engine, demo, model, task_uuid, prompt, width, height, steps, "
            "CFGScale, seed, cost_usd, latency_s, image_path, sweep_id, sweep_cell, request_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.close()


def timed(function, repeats: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, max(seconds) * 1000


def watched_writes(home: Path, get, rows: int = 2000) -> dict[str, tuple[float, float]]:
    """Seconds to log ``rows`` submitted rows, alone and with a sidebar-like client polling the server."""
    from kandinsky_nb.runlog import RunLog
    from kandinsky_nb.types import ImageInferenceRequest

    request = ImageInferenceRequest(positivePrompt="a watched sweep", width=1024, height=1024)

    def write() -> float:
        started = time.perf_counter()
        with RunLog(home) as log:
            for _ in range(rows):
                log.record_submitted(request.replace(), engine="runware", demo=False, sweep_id="watched")
        return time.perf_counter() - started

    alone = write()
    stop = threading.Event()
    polls = [0]

    def watch() -> None:
        last = None
        while not stop.is_set():
            revision = get("revision?no_track_activity=1")
            if revision != last:
                last = revision
                get("runs?limit=50")
            polls[0] += 1
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        watched = write()
    finally:
        stop.set()
        watcher.join()
    print(f"sweep writes: {rows} rows in {alone:.2f} s alone, {watched:.2f} s watched ({polls[0]} polls)")
    return {
        f"sweep: {rows} rows logged, alone": (alone * 1000, alone * 1000),
        f"sweep: {rows} rows logged, sidebar watching": (watched * 1000, watched * 1000),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--home", type=Path, default=None, help="keep the log here (default: a temporary folder)")
    args = parser.parse_args()

    from kandinsky_nb.jupyter.reader import RunFilter, RunLogReader

    with tempfile.TemporaryDirectory(prefix="bench-sidebar-") as scratch:
        home = (args.home or Path(scratch) / "home").resolve()
        started = time.perf_counter()
        build_log(home, args.runs)
        print(f"built a log of {args.runs:,} runs in {time.perf_counter() - started:.1f} s ({home})")

        reader = RunLogReader(home)
        first_page = RunFilter.from_query({"limit": "50"})
        assert len(reader.runs(first_page)["runs"]) == 50
        results = {"reader: first page of 50": timed(lambda: reader.runs(first_page), args.repeats)}
        for label, query in (
            ("reader: status=failed", {"status": "failed"}),
            ("reader: q=lighthouse", {"q": "lighthouse"}),
            ("reader: sweep=sweep-7", {"sweep": "sweep-7"}),
            ("reader: page 100 (offset 4950)", {"offset": "4950"}),
        ):
            run_filter = RunFilter.from_query({"limit": "50", **query})
            results[label] = timed(lambda f=run_filter: reader.runs(f), args.repeats)
        results["reader: status"] = timed(reader.status, args.repeats)
        results["reader: revision (the live poll)"] = timed(reader.revision, args.repeats)

        port = free_port()
        env = {**os.environ, "KANDINSKY_NB_HOME": str(home)}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                f"--port={port}",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.token={TOKEN}",
                f"--ServerApp.root_dir={scratch}",
                "--ServerApp.jpserver_extensions={'kandinsky_nb': True}",
                f"--KandinskyNBExtension.home={home}",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}/kandinsky-nb/api"
        headers = {"Authorization": f"token {TOKEN}"}

        def get(route: str) -> bytes:
            request = urllib.request.Request(f"{base}/{route}", headers=headers)
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.read()

        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    get("status")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("jupyter server did not start") from None
                    time.sleep(0.25)
            assert len(json.loads(get("runs?limit=50"))["runs"]) == 50
            results["HTTP: first page of 50"] = timed(lambda: get("runs?limit=50"), args.repeats)
            results["HTTP: q=lighthouse"] = timed(lambda: get("runs?limit=50&q=lighthouse"), args.repeats)
            results["HTTP: revision (the live poll)"] = timed(lambda: get("revision?no_track_activity=1"), args.repeats)
            newest_ok = json.loads(get("runs?limit=1&status=ok"))["runs"][0]["id"]
            results["HTTP: thumbnail, first (Pillow)"] = timed(lambda: get(f"runs/{newest_ok}/thumbnail"), 1)
            results["HTTP: thumbnail, cached"] = timed(lambda: get(f"runs/{newest_ok}/thumbnail"), args.repeats)
            results.update(watched_writes(home, get))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)

    width = max(map(len, results))
    print(f"{'':{width}}  median ms  worst ms")
    for label, (median, worst) in results.items():
        print(f"{label:{width}}  {median:9.1f}  {worst:8.1f}")
    alone, watched = (value[0] for key, value in results.items() if key.startswith("sweep:"))
    print(f"a watching sidebar slows a running sweep's logging {watched / alone:.2f}x")
    target = results["HTTP: first page of 50"][0]
    verdict = "within" if target < 200 else "OVER"
    print(f"first page over HTTP: {target:.1f} ms median, {verdict} the 200 ms target")


if __name__ == "__main__":
    main()
