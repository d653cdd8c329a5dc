"""The panels' two speed goals (issue 12): click-to-first-preview and a Gallery over a large run log opening.

    .venv/bin/python benchmarks/bench_panels.py [--repeats 5] [--runs 10000] [--steps 20]

1. Click-to-first-preview on the demo engine, after a warm-up run (the pipeline loaded, torch warm): a GeneratePanel
   on a real Session, its Generate button clicked inside a running event loop (as in a kernel), timed until the first
   live preview reaches the panel's preview widget, and until the images are on screen. Goal: under 1 s.
2. A Gallery over ``--runs`` logged runs (the real schema; synthetic rows as ``bench_sidebar.py`` builds them, the
   newest two pages' images distinct 1024x1024 PNG files stored by content as the run log stores them) opening:
   constructing the widget, which reads the log and draws its first page of thumbnails, then the next page. Goal:
   under 1 s. The very first opening makes and caches the thumbnails (timed once); the repeats, each on a fresh
   RunLog, read them from the cache, as any later opening does.

Prints each figure (median and worst of ``--repeats``) against its goal.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 1.0


async def click_to_preview(panel, prompt: str) -> tuple[float, float]:
    """Seconds from the click to the first preview on screen, and to the finished run's images."""
    panel.update(positivePrompt=prompt)
    started = time.perf_counter()
    panel.generate_button.click()
    while panel.run_state.preview is None and not panel.task.done():
        await asyncio.sleep(0.002)
    first_preview = time.perf_counter() - started
    if panel.preview_image.value == b"" and panel.task.done():
        raise RuntimeError("the run ended without a preview")
    await panel.task
    if not panel.generations:
        raise RuntimeError(f"the run failed: {panel.run_state.last_error}")
    return first_preview, time.perf_counter() - started


def bench_preview(home: Path, repeats: int, steps: int) -> dict[str, list[float]]:
    from kandinsky_nb.backends.local import LocalBackend
    from kandinsky_nb.session import Session
    from kandinsky_nb.ui import GeneratePanel

    backend = LocalBackend.from_demo_weights(home / "demo-weights")
    session = Session(engine=backend, home=home / "preview")

    async def run() -> dict[str, list[float]]:
        panel = GeneratePanel(session)
        panel.update(steps=steps, size="1K (1:1)")
        await click_to_preview(panel, "a warm-up run")  # loads the pipeline: not what a person waits for again
        previews, images = [], []
        for index in range(repeats):
            first, done = await click_to_preview(panel, f"a red fox in snow, take {index}")
            previews.append(first)
            images.append(done)
        return {"click to first preview": previews, "click to images on screen": images}

    try:
        return asyncio.run(run())
    finally:
        session.close()


def build_gallery_log(home: Path, runs: int, distinct: int) -> None:
    """``runs`` synthetic rows (bench_sidebar's builder), the newest ``distinct`` with their own image files."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_sidebar import build_log
    from PIL import Image

    from kandinsky_nb.runlog.files import write_image_once

    build_log(home, runs)
    with sqlite3.connect(home / "runs.db") as db:
        newest = db.execute("SELECT id FROM runs WHERE status = 'ok' ORDER BY id DESC LIMIT ?", (distinct,)).fetchall()
        for index, (row_id,) in enumerate(newest):
            buffer = io.BytesIO()
            # A smooth gradient per image: a realistic PNG size (noise would be several MB each).
            Image.linear_gradient("L").resize((1024, 1024)).convert("RGB").rotate(index * 7).save(buffer, "PNG")
            # Stored as the run log stores images (images/ab/<sha256>.png), so the thumbnail cache keys them.
            path, digest = write_image_once(home / "images", buffer.getvalue())
            db.execute(
                "UPDATE runs SET image_path = ?, image_sha256 = ? WHERE id = ?",
                (str(path.relative_to(home)), digest, row_id),
            )
    db.close()


def bench_gallery(home: Path, runs: int, repeats: int) -> dict[str, list[float]]:
    from kandinsky_nb.runlog import RunLog
    from kandinsky_nb.ui import Gallery

    log_home = home / "gallery"
    started = time.perf_counter()
    build_gallery_log(log_home, runs, distinct=2 * 48)
    print(f"built a log of {runs:,} runs in {time.perf_counter() - started:.1f} s")
    opened, next_page = [], []
    # The first opening ever makes the thumbnails of its page (and the next page's on its first view) and caches
    # them; every later opening, in any kernel, reads the cached thumbnails.
    log = RunLog(log_home)
    try:
        started = time.perf_counter()
        gallery = Gallery(log)
        first_ever = [time.perf_counter() - started]
        started = time.perf_counter()
        gallery.next_button.click()
        first_next = [time.perf_counter() - started]
    finally:
        log.close()
    for _ in range(repeats):
        log = RunLog(log_home)  # a fresh log each time: nothing cached from the last opening
        try:
            started = time.perf_counter()
            gallery = Gallery(log)
            opened.append(time.perf_counter() - started)
            shown = list(gallery.state.shown_ids)
            assert len(shown) == gallery.state.limit, (len(shown), gallery.state.limit)
            started = time.perf_counter()
            gallery.next_button.click()
            next_page.append(time.perf_counter() - started)
            assert gallery.state.page == 1 and gallery.state.shown_ids != shown
        finally:
            log.close()
    total = gallery.state.total
    # What the thumbnail cache saves each later opening: shrinking the page's full-size images, measured alone.
    from kandinsky_nb.html import thumbnail

    with sqlite3.connect(log_home / "runs.db") as db:
        paths = [
            log_home / p
            for (p,) in db.execute("SELECT image_path FROM runs WHERE status = 'ok' ORDER BY id DESC LIMIT 48")
        ]
    db.close()
    shrinking = []
    for _ in range(repeats):
        started = time.perf_counter()
        for path in paths:
            thumbnail(path.read_bytes(), 160)  # the Gallery's tile size
        shrinking.append(time.perf_counter() - started)
    return {
        f"Gallery over {runs:,} runs ({total:,} images) opens, first page": opened,
        "its next page": next_page,
        "  the first opening ever (thumbnails made and cached), once": first_ever,
        "  its next page, first view, once": first_next,
        "  48 thumbnails made from 1024x1024 PNGs, alone (what the cache saves)": shrinking,
    }


def report(results: dict[str, list[float]], goal_for: set[str]) -> None:
    for label, seconds in results.items():
        median, worst = statistics.median(seconds), max(seconds)
        goal = ""
        if label in goal_for or any(label.startswith(prefix) for prefix in goal_for):
            goal = f"  goal < {GOAL_S:g} s: {'met' if median < GOAL_S else 'MISSED'}"
        print(f"{label:<72} median {median:7.3f} s   worst {worst:7.3f} s{goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-panels-") as scratch:
        home = Path(scratch)
        preview = bench_preview(home, args.repeats, args.steps)
        report(preview, {"click to first preview"})
        gallery = bench_gallery(home, args.runs, args.repeats)
        report(gallery, {"Gallery over"})


if __name__ == "__main__":
    main()
