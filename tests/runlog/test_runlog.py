"""The run log: schema migrations, rows for every outcome, images written once with their parameters, DataFrame and
export, and two processes writing one log at the same time."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from runlog_testkit import colour_of, generation, request

from kandinsky_nb.errors import RunLogError, TaskError
from kandinsky_nb.runlog import MIGRATIONS, RunLog, read_embedded_params

HERE = Path(__file__).resolve().parent


def test_fresh_log_applies_every_migration_once_in_order(tmp_path):
    RunLog(tmp_path).close()
    RunLog(tmp_path).close()  # opening again applies nothing twice
    with sqlite3.connect(tmp_path / "runs.db") as db:
        applied = [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert applied == [m.__name__ for m in MIGRATIONS]
    assert mode == "wal"


def test_an_older_log_is_migrated_forward(tmp_path):
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)")
        for migration in MIGRATIONS[:1]:
            migration(db)
            db.execute("INSERT INTO _migrations VALUES (?, 'then')", (migration.__name__,))
    with RunLog(tmp_path) as log:
        log.record_submitted(request(), engine="runware", demo=False)
        assert "gpu_seconds" in log.df.columns


def test_submitted_row_then_ok_row_in_place(tmp_path):
    log = RunLog(tmp_path)
    req = request(steps=28, CFGScale=7.5, seed=7, width=1280, height=768, scheduler="Euler", negativePrompt="blurry")
    log.record_submitted(req, engine="runware", demo=False, sweep_id="s", sweep_cell='{"steps":28}')
    [row] = log.get(req.taskUUID)
    assert row["status"] == "submitted"
    assert json.loads(row["request_json"]) == req.to_wire()  # the exact request, before anything is sent

    ids = log.record_generation(generation(req), sweep_id="s", sweep_cell='{"steps":28}')
    [row] = log.get(req.taskUUID)
    assert ids == [row["id"]]
    assert row["status"] == "ok"
    expected = {"prompt": "a red fox in snow", "negative_prompt": "blurry", "width": 1280, "height": 768}
    expected |= {"steps": 28, "CFGScale": 7.5, "scheduler": "Euler", "seed": 7, "cost_usd": 0.001, "sweep_id": "s"}
    assert {k: row[k] for k in expected} == expected


def test_model_defaults_are_logged_as_their_values(tmp_path):
    log = RunLog(tmp_path)
    req = request()
    log.record_generation(generation(req))
    [row] = log.get(req.taskUUID)
    assert (row["steps"], row["CFGScale"], row["width"], row["height"]) == (20, 7.0, 1024, 1024)


def test_one_row_per_image_with_result_index(tmp_path):
    log = RunLog(tmp_path)
    req = request(numberResults=3, seed=10)
    log.record_submitted(req, engine="runware", demo=False)
    log.record_generation(generation(req))
    rows = log.get(req.taskUUID)
    assert [(r["result_index"], r["seed"], r["status"]) for r in rows] == [(0, 10, "ok"), (1, 11, "ok"), (2, 12, "ok")]


def test_failure_row_keeps_code_message_and_wire_error(tmp_path):
    log = RunLog(tmp_path)
    req = request()
    error = TaskError(
        "Task failed: the prompt was refused [code='invalidPositivePrompt']",
        code="invalidPositivePrompt",
        parameter="positivePrompt",
        task_uuid=req.taskUUID,
        error={"code": "invalidPositivePrompt", "message": "refused"},
    )
    log.record_submitted(req, engine="runware", demo=False)
    log.record_failure(req, error, engine="runware", demo=False, latency_s=0.5)
    [row] = log.get(req.taskUUID)
    assert row["status"] == "failed"
    assert (row["error_type"], row["error_code"]) == ("TaskError", "invalidPositivePrompt")
    assert "prompt was refused" in row["error_message"]
    assert json.loads(row["response_json"]) == {"code": "invalidPositivePrompt", "message": "refused"}
    assert row["image_path"] is None


@pytest.mark.parametrize("output_format", ["PNG", "JPG", "WEBP"])
def test_images_are_content_addressed_and_carry_their_parameters(tmp_path, output_format):
    import io

    log = RunLog(tmp_path)
    req = request(seed=5, steps=12, outputFormat=output_format)
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), colour_of(5)).save(buffer, format={"JPG": "JPEG"}.get(output_format, output_format))
    made = generation(req)
    made.images[0] = type(made.images[0])(made.images[0].result, buffer.getvalue())
    log.record_generation(made)
    [row] = log.get(req.taskUUID)
    path = log.image_path(row)
    assert path.name == f"{row['image_sha256']}.{path.suffix[1:]}"
    assert path.parent.name == row["image_sha256"][:2]
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == row["image_sha256"]
    params = read_embedded_params(path)
    assert params["taskUUID"] == req.taskUUID
    assert (params["steps"], params["seed"], params["positivePrompt"]) == (12, 5, "a red fox in snow")
    with Image.open(path) as image:  # still a valid image of the same size
        assert image.size == (24, 16)


def test_identical_images_are_stored_once(tmp_path):
    log = RunLog(tmp_path)
    first, second = request(seed=3), request(seed=3)
    # Same bytes and same embedded parameters except the taskUUID: two files. Same request twice: one file.
    made = generation(first)
    log.record_generation(made)
    log.record_generation(made)
    log.record_generation(generation(second))
    files = list((tmp_path / "images").rglob("*.png"))
    assert len(files) == 2
    assert len(log) == 2


def test_dataframe_types_and_exports_round_trip(tmp_path):
    import pandas as pd

    log = RunLog(tmp_path)
    for seed in range(3):
        log.record_generation(generation(request(seed=seed, width=1280, height=768)))
    frame = log.df
    assert len(frame) == 3
    assert str(frame["created_utc"].dtype).startswith("datetime64")
    assert frame["demo"].dtype == bool
    assert set(frame["size"]) == {"1280x768"}
    assert all(Path(p).is_file() for p in frame["image_path"])
    parquet = pd.read_parquet(log.export(tmp_path / "out" / "runs.parquet"))
    csv = pd.read_csv(log.export(tmp_path / "out" / "runs.csv"))
    assert list(parquet["task_uuid"]) == list(frame["task_uuid"]) == list(csv["task_uuid"])
    assert list(parquet["seed"]) == [0, 1, 2]


def test_cancelled_marks_only_unanswered_rows(tmp_path):
    log = RunLog(tmp_path)
    pending, done = request(), request()
    for req in (pending, done):
        log.record_submitted(req, engine="runware", demo=False)
    log.record_generation(generation(done))
    log.record_cancelled(pending.taskUUID)
    log.record_cancelled(done.taskUUID)
    assert log.get(pending.taskUUID)[0]["status"] == "cancelled"
    assert log.get(done.taskUUID)[0]["status"] == "ok"


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from runlog_testkit import generation
    from kandinsky_nb.runlog import RunLog
    from kandinsky_nb.types import ImageInferenceRequest

    log = RunLog({home!r})
    for i in range({count}):
        req = ImageInferenceRequest(positivePrompt="writer {tag} row " + str(i), seed=i)
        log.record_submitted(req, engine="runware", demo=False, sweep_id={tag!r})
        log.record_generation(generation(req), sweep_id={tag!r})
    """
)


def test_run_numbers_do_not_skip_when_a_row_is_updated(tmp_path):
    # People refer to runs by number (#12 in the sidebar, the Gallery, `%knb show 12`): submitted -> ok must not burn one.
    log = RunLog(tmp_path)
    for seed in range(3):
        req = request(seed=seed)
        log.record_submitted(req, engine="runware", demo=False)
        log.record_generation(generation(req))
    assert list(log.df["id"]) == [1, 2, 3]


def test_the_last_written_id_counts_the_rows_every_writer_logged(tmp_path):
    # A session reads the log's growth from it (to refit its cost model) instead of counting the rows per request.
    with RunLog(tmp_path) as mine, RunLog(tmp_path) as other:
        assert mine.last_written_id is None  # nothing written yet
        for seed in range(3):  # another kernel logging into the same home
            other.record_submitted(request(seed=seed), engine="runware", demo=False)
        req = request(seed=9)
        mine.record_submitted(req, engine="runware", demo=False)
        assert mine.last_written_id == 4 == len(mine)
        mine.record_generation(generation(req))  # the same row, rewritten in place
        assert mine.last_written_id == 4
        assert other.last_written_id == 3


def test_rows_can_read_only_some_columns(tmp_path):
    # A cost fit over a big log reads the six columns it needs, not every column of every row.
    with RunLog(tmp_path) as log:
        for seed in range(2):
            req = request(seed=seed, steps=20)
            log.record_submitted(req, engine="runware", demo=False)
            log.record_generation(generation(req, cost=0.002))
        assert log.rows("status = 'ok'", columns=("steps", "cost_usd")) == [
            {"steps": 20, "cost_usd": 0.002},
            {"steps": 20, "cost_usd": 0.002},
        ]
        with pytest.raises(RunLogError, match=r"no column \['cost'\]"):
            log.rows(columns=("steps", "cost"))


def test_two_processes_writing_one_log_lose_no_row(tmp_path):
    RunLog(tmp_path).close()  # created up front so both writers only append
    count = 150
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.format(here=str(HERE), home=str(tmp_path), count=count, tag=tag)]
        )
        for tag in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    with RunLog(tmp_path) as log:
        frame = log.df
    assert len(frame) == 2 * count
    assert frame["task_uuid"].is_unique
    assert sorted(frame["id"]) == list(range(1, 2 * count + 1))  # no id taken twice, none skipped
    assert (frame["status"] == "ok").all()
    assert frame.groupby("sweep_id").size().to_dict() == {"a": count, "b": count}


def test_a_rewritten_row_keeps_its_id_and_created_time_and_drops_stale_values(tmp_path):
    log = RunLog(tmp_path)
    req = request(seed=2)
    first_id = log.record_failure(req, TaskError("dropped", code="x"), engine="runware", demo=False, unanswered=True)
    [before] = log.get(req.taskUUID)
    # The resume found the answer: the same (taskUUID, result 0) row becomes ok, and the error of the first try goes.
    [ok_id] = log.record_generation(generation(req))
    [after] = log.get(req.taskUUID)
    assert ok_id == first_id == after["id"]
    assert after["created_utc"] == before["created_utc"]
    assert (after["status"], after["error_type"], after["error_message"]) == ("ok", None, None)
    assert after["image_sha256"] and after["finished_utc"] != before["finished_utc"]


def test_rows_and_image_files_carry_the_package_version(tmp_path):
    import kandinsky_nb

    log = RunLog(tmp_path)
    req = request(seed=1)
    log.record_generation(generation(req))
    [row] = log.get(req.taskUUID)
    assert row["toolkit_version"] == kandinsky_nb.__version__
    assert read_embedded_params(log.image_path(row))["toolkitVersion"] == kandinsky_nb.__version__


def test_an_sqlite_without_upsert_returning_is_refused_with_the_fix(tmp_path, monkeypatch):
    # The linked library's version cannot be changed in-process; only the number the guard reads is replaced.
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(RunLogError, match=r"needs SQLite 3\.35\.0 or newer.*links SQLite 3\.31\.1\. Use a Python"):
        RunLog(tmp_path)
    assert not (tmp_path / "runs.db").exists()
