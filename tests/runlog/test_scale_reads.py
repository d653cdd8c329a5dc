"""Reading the run log at scale: dtypes from the schema (not from the values of one read), the same values as a bare
read, chunked reads, score columns by indexed lookup, and filters that an index answers (checked with EXPLAIN QUERY
PLAN). No timings here: benchmarks/bench_runlog.py measures them against their baselines."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from runlog_testkit import generation, request

from kandinsky_nb import spec
from kandinsky_nb.errors import RunLogError, TaskError
from kandinsky_nb.runlog import UNANSWERED, RunLog
from kandinsky_nb.runlog import frame as frames
from kandinsky_nb.runlog import metrics as scores

TEXT = pd.Series(["text"]).dtype  # pandas' own dtype for text (str from pandas 3)
SCHEMA_DTYPES = {
    "id": "int64",
    "created_utc": "datetime64[us, UTC]",
    "finished_utc": "datetime64[us, UTC]",
    "status": TEXT,
    "demo": "bool",
    "result_index": "int64",
    "prompt": TEXT,
    "width": "Int64",
    "height": "Int64",
    "steps": "Int64",
    "seed": "Int64",
    "CFGScale": "float64",
    "cost_usd": "float64",
    "gpu_seconds": "float64",
    "error_code": TEXT,
    "image_path": TEXT,
    "size": TEXT,
    "size_label": TEXT,
    "megapixels": "float64",
}


def full_scan(plan: list[str]) -> bool:
    """Whether a query plan reads the whole runs table (``SCAN runs``; ``SCAN runs_prompt`` is the prompt index)."""
    return any(re.fullmatch(r"SCAN runs( .*)?", line) for line in plan)


def mixed_log(log: RunLog) -> dict[str, int]:
    """Two sweeps with images, a failure, a submitted request without a seed, other prompts and engines."""
    ids = {}
    for seed in range(4):
        ids[f"fox{seed}"] = log.record_generation(
            generation(request(seed=seed, width=1280, height=768)), sweep_id="foxes", sweep_cell=f'{{"seed": {seed}}}'
        )[0]
    for seed in range(2):
        ids[f"owl{seed}"] = log.record_generation(
            generation(request(positivePrompt='An owl at DUSK, 100% "ink"', seed=10 + seed), engine="local"),
            sweep_id="owls",
        )[0]
    failing = request(positivePrompt="a whale in the deep sea", seed=99)
    ids["failed"] = log.record_failure(
        failing, TaskError("refused", code="invalidPrompt"), engine="runware", demo=False
    )
    ids["submitted"] = log.record_submitted(
        request(positivePrompt="a whale in the deep sea"), engine="runware", demo=True
    )
    return ids


# -- dtypes and values ------------------------------------------------------------------------------------------------
def test_dtypes_come_from_the_schema_even_when_a_column_is_all_null_or_the_log_is_empty(tmp_path):
    empty = RunLog(tmp_path / "empty").df
    only_submitted = RunLog(tmp_path / "submitted")
    only_submitted.record_submitted(request(seed=None), engine="runware", demo=False)
    mixed = RunLog(tmp_path / "mixed")
    mixed_log(mixed)
    for frame in (empty, only_submitted.df, mixed.df):
        assert {name: frame[name].dtype for name in SCHEMA_DTYPES} == {
            name: pd.Series(dtype=dtype).dtype for name, dtype in SCHEMA_DTYPES.items()
        }
    assert list(empty.columns) == list(mixed.df.columns)


def test_values_match_a_bare_read_of_the_table(tmp_path):
    log = RunLog(tmp_path)
    mixed_log(log)
    frame = log.df
    with sqlite3.connect(log.path) as db:
        cursor = db.execute("SELECT * FROM runs ORDER BY id")
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    assert len(frame) == len(rows)
    for number, row in enumerate(rows):
        for name, stored in zip(names, row, strict=True):
            value = frame[name].iloc[number]
            if stored is None:
                assert pd.isna(value), (name, value)
            elif name in frames.TIME_COLUMNS:
                assert value == datetime.fromisoformat(stored), name
            elif name == "image_path":
                assert value == str(tmp_path / stored)
            elif name == "demo":
                assert value == bool(stored)
            else:
                assert value == stored, (name, value, stored)


def test_analysis_columns(tmp_path):
    log = RunLog(tmp_path)
    ids = mixed_log(log)
    frame = log.df.set_index("id")
    fox, owl, submitted = frame.loc[ids["fox0"]], frame.loc[ids["owl0"]], frame.loc[ids["submitted"]]
    assert (fox["size"], fox["size_label"], fox["megapixels"]) == ("1280x768", spec.size_for(1280, 768).label, 0.98304)
    assert owl["size"] == "1024x1024" and owl["size_label"] == "1K (1:1)"
    assert pd.isna(submitted["image_path"]) and pd.isna(submitted["finished_utc"]) and pd.isna(submitted["seed"])


def test_a_read_in_many_chunks_equals_a_read_in_one(tmp_path):
    log = RunLog(tmp_path)
    mixed_log(log)  # the submitted row (no seed) lands in its own chunk of 3
    kinds = frames.column_kinds(sqlite3.connect(log.path).execute("PRAGMA table_info(runs)"))
    with sqlite3.connect(log.path) as db:
        sql = frames.select_sql(list(kinds))
        whole = frames.read_frame(db.execute(sql), kinds, tmp_path)
        chunked = frames.read_frame(db.execute(sql), kinds, tmp_path, chunk_rows=3)
    pd.testing.assert_frame_equal(chunked, whole)
    assert chunked["seed"].dtype == "Int64" and chunked["seed"].isna().sum() == 1


# -- score columns ----------------------------------------------------------------------------------------------------
def test_score_columns_hold_the_newest_score_of_each_image(tmp_path):
    log = RunLog(tmp_path)
    ids = mixed_log(log)
    log.record_metrics([score(ids["fox0"], 0.5), score(ids["fox1"], 0.25, metric="psnr")])
    # One call stores both with the same time: the one stored last (the higher rowid) is the newest.
    log.record_metrics([score(ids["fox0"], 0.7, reference="a"), score(ids["fox0"], 0.9, reference="b")])
    log.record_metrics([score(ids["owl0"], None)])  # scored, no value
    frame = log.df.set_index("id")
    assert list(frame.columns[-2:]) == ["score_psnr", "score_ssim"]
    assert frame["score_ssim"].dtype == "float64" and frame["score_psnr"].dtype == "float64"
    assert frame.loc[ids["fox0"], "score_ssim"] == 0.9
    assert frame.loc[ids["fox1"], "score_psnr"] == 0.25
    assert frame["score_ssim"].notna().sum() == 1  # owl0's None and every unscored row read as NaN
    # A re-scored value (an upsert of the same key) takes over.
    log.record_metrics([score(ids["fox0"], 0.1, reference="a")])
    assert log.df.set_index("id").loc[ids["fox0"], "score_ssim"] == 0.1


def test_runs_that_share_an_image_share_its_score_and_a_query_carries_scores(tmp_path):
    log = RunLog(tmp_path)
    first = log.record_generation(generation(request(seed=3), image_format="BMP"), sweep_id="a")[0]
    second = log.record_generation(generation(request(seed=3), image_format="BMP"), sweep_id="b")[0]
    log.record_metrics([score(first, 0.8)])
    assert log.df["score_ssim"].tolist() == [0.8, 0.8]
    assert log.query(sweep_id="b")[["id", "score_ssim"]].values.tolist() == [[second, 0.8]]
    # A limited read scores exactly the rows it read.
    assert log.query(limit=1, newest_first=True)[["id", "score_ssim"]].values.tolist() == [[second, 0.8]]
    # Every metric of the log is a column, also where the rows read have no score of it.
    log.record_metrics([score(first, 2.0, metric="psnr")])
    assert log.query(sweep_id="b")["score_psnr"].tolist() == [2.0]
    third = log.record_generation(generation(request(seed=4)), sweep_id="c")[0]
    assert log.query(sweep_id="c")[["id", "score_psnr", "score_ssim"]].values.tolist()[0][0] == third
    assert log.query(sweep_id="c")[["score_psnr", "score_ssim"]].isna().all().all()


def score(run_id: int, value: float | None, metric: str = "ssim", reference: str = "") -> dict:
    return {"run_id": run_id, "metric": metric, "value": value, "scorer_version": "1", "reference": reference}


# -- filters ----------------------------------------------------------------------------------------------------------
FILTERS = [
    {"sweep_id": "foxes"},
    {"sweep_id": "nothing"},
    {"status": "failed"},
    {"status": UNANSWERED},
    {"status": ["ok", "failed"], "engine": "local"},
    {"prompt": "a whale in the deep sea"},
    {"prompt": "A WHALE IN THE DEEP SEA"},  # exact: case matters
    {"prompt_contains": "WHALE"},  # a substring: case does not
    {"prompt_contains": '100% "ink"'},  # quotes and % are text, not syntax
    {"prompt_contains": "fox", "sweep_id": "foxes", "status": "ok"},
]


def pandas_filter(frame: pd.DataFrame, options: dict) -> pd.DataFrame:
    """The same filters in pandas over the whole frame: the oracle."""
    keep = pd.Series(True, index=frame.index)
    if "sweep_id" in options:
        keep &= frame["sweep_id"] == options["sweep_id"]
    if "status" in options:
        statuses = [options["status"]] if isinstance(options["status"], str) else list(options["status"])
        keep &= frame["status"].isin(statuses)
    if "engine" in options:
        keep &= frame["engine"] == options["engine"]
    if "prompt" in options:
        keep &= frame["prompt"] == options["prompt"]
    if "prompt_contains" in options:
        keep &= frame["prompt"].str.lower().str.contains(options["prompt_contains"].lower(), regex=False)
    return frame[keep].reset_index(drop=True)


@pytest.mark.parametrize("options", FILTERS, ids=[str(options) for options in FILTERS])
def test_query_returns_what_pandas_would_keep(tmp_path, options):
    log = RunLog(tmp_path)
    mixed_log(log)
    expected = pandas_filter(log.df, options)
    assert len(expected) < len(log)  # every filter leaves rows out, so a no-op filter would fail
    pd.testing.assert_frame_equal(log.query(**options), expected)


def test_query_by_time_limit_and_order(tmp_path):
    log = RunLog(tmp_path)
    mixed_log(log)
    frame = log.df
    middle = frame["created_utc"].iloc[3]
    pd.testing.assert_frame_equal(log.query(since=middle), frame[frame["created_utc"] >= middle].reset_index(drop=True))
    before = log.query(until=middle.to_pydatetime().replace(tzinfo=None))  # no zone: read as UTC
    assert before["id"].tolist() == frame["id"].iloc[:3].tolist()
    assert log.query(since=(middle + timedelta(days=1)).isoformat()).empty
    assert log.query(limit=2, newest_first=True)["id"].tolist() == frame["id"].iloc[::-1][:2].tolist()
    assert log.query(sweep_id="foxes", limit=0).empty


def test_the_prompt_index_follows_inserts_rewrites_and_deletes(tmp_path):
    log = RunLog(tmp_path)
    pending = request(positivePrompt="a heron in the reeds")
    log.record_submitted(pending, engine="runware", demo=False)
    log.record_generation(generation(pending))  # the same row, now ok: same prompt, the index is left alone
    assert len(log.query(prompt_contains="heron")) == 1
    # A rewrite of the row under another prompt (the upsert of the same taskUUID) moves it in the index.
    rewritten = request(positivePrompt="a crane over water", taskUUID=pending.taskUUID)
    log.record_submitted(rewritten, engine="runware", demo=False)
    assert log.query(prompt_contains="heron").empty
    assert len(log.query(prompt_contains="crane")) == 1
    with sqlite3.connect(log.path) as db:
        db.execute("DELETE FROM runs")
    assert log.query(prompt_contains="crane").empty
    with sqlite3.connect(log.path) as db:  # raises if the index and the table disagree
        db.execute("INSERT INTO runs_prompt (runs_prompt, rank) VALUES ('integrity-check', 1)")


def test_an_older_log_gets_its_rows_into_the_new_indexes(tmp_path):
    with RunLog(tmp_path) as log:
        mixed_log(log)
    with sqlite3.connect(tmp_path / "runs.db") as db:  # back to the log as it was before m005
        for statement in (
            "DROP TRIGGER runs_prompt_insert",
            "DROP TRIGGER runs_prompt_delete",
            "DROP TRIGGER runs_prompt_update",
            "DROP TABLE runs_prompt",
            "DROP INDEX runs_status",
            "DROP INDEX metrics_newest",
        ):
            db.execute(statement)
        db.execute("DELETE FROM _migrations WHERE name = 'm005_read_indexes'")
    with RunLog(tmp_path) as log:
        assert len(log.query(prompt_contains="whale")) == 2
        assert not full_scan(log.query_plan(prompt_contains="whale"))


# -- index use --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "index"),
    [
        ({"sweep_id": "foxes"}, "USING INDEX runs_sweep"),
        ({"status": "failed"}, "USING INDEX runs_status"),
        ({"status": UNANSWERED, "limit": 5, "newest_first": True}, "USING INDEX runs_status"),
        ({"since": "2026-01-01T00:00:00+00:00"}, "USING INDEX runs_created"),
        ({"prompt_contains": "whale"}, "runs_prompt VIRTUAL TABLE"),
        ({"prompt": "a whale in the deep sea", "engine": "runware"}, "runs_prompt VIRTUAL TABLE"),
    ],
)
def test_each_filter_is_answered_by_an_index(tmp_path, options, index):
    log = RunLog(tmp_path)
    ids = mixed_log(log)
    log.record_metrics([score(ids["fox0"], 0.5)])
    plan = log.query_plan(**options)
    assert any(index in line for line in plan), plan
    assert not full_scan(plan), plan
    # The scores are looked up by the selected rows' images, not scanned.
    assert any(line.startswith("SEARCH metrics USING INDEX") and "image_sha256=?" in line for line in plan), plan
    assert not any(line.startswith("SCAN metrics") for line in plan), plan


def test_the_metric_names_are_found_by_index_seeks(tmp_path):
    log = RunLog(tmp_path)
    plan = [row[3] for row in log._db.execute("EXPLAIN QUERY PLAN " + scores.METRIC_NAMES_SQL)]
    assert not any(line.startswith("SCAN metrics") for line in plan), plan
    assert any("USING COVERING INDEX metrics_newest" in line for line in plan), plan


def test_the_whole_log_is_a_scan_and_says_so(tmp_path):
    # The checks above can fail: a plan with no filter reads the whole table, and every score along their index.
    plan = RunLog(tmp_path).query_plan()
    assert full_scan(plan)
    assert "SCAN metrics USING INDEX metrics_newest" in plan, plan  # in its order: no sort


# -- refused arguments ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"prompt_contains": "ox"}, ["prompt_contains 'ox'", "3 characters", "str.contains"]),
        ({"prompt": "ox"}, ["prompt 'ox'", "3 characters"]),
        ({"status": "done"}, ["status 'done'", "submitted, ok, failed", "UNANSWERED"]),
        ({"status": []}, ["status []"]),
        ({"sweep_id": 3}, ["sweep_id 3", "a string"]),
        ({"since": "yesterday"}, ["since 'yesterday'", "ISO 8601"]),
        ({"limit": -1}, ["limit -1", "0 or more"]),
        ({"limit": True}, ["limit True"]),
    ],
)
def test_bad_filters_are_refused_with_the_fix(tmp_path, options, words):
    log = RunLog(tmp_path)
    with pytest.raises(RunLogError) as caught:
        log.query(**options)
    for word in words:
        assert word in str(caught.value)


def test_the_sql_condition_escape_hatch_still_reads_typed_rows_with_scores(tmp_path):
    log = RunLog(tmp_path)
    ids = mixed_log(log)
    log.record_metrics([score(ids["owl1"], 0.3)])
    frame = log.dataframe("engine = ? AND seed > ?", ("local", 10))
    assert frame["id"].tolist() == [ids["owl1"]]
    assert frame["score_ssim"].tolist() == [0.3]
    assert frame["seed"].dtype == "Int64"


def test_a_value_the_declared_type_cannot_read_is_named_with_the_fix(tmp_path):
    log = RunLog(tmp_path)
    ids = mixed_log(log)
    with sqlite3.connect(log.path) as db:  # REAL affinity keeps a text that is not a number as text
        db.execute("UPDATE runs SET cost_usd = 'about a cent' WHERE id = ?", (ids["fox1"],))
    with pytest.raises(RunLogError) as caught:
        log.dataframe()
    assert "'cost_usd'" in str(caught.value) and "numbers or NULL" in str(caught.value)
    assert "SELECT id, cost_usd, typeof(cost_usd) FROM runs" in str(caught.value)
    assert len(log.query(sweep_id="owls")) == 2  # the rows around it still read


def test_times_are_compared_in_utc(tmp_path):
    log = RunLog(tmp_path)
    mixed_log(log)
    second = log.df["created_utc"].iloc[1].to_pydatetime()
    nine_hours_east = second.astimezone(timezone(timedelta(hours=9)))  # the same instant, another wall-clock time
    assert log.query(since=nine_hours_east)["id"].tolist() == log.df["id"].tolist()[1:]
    assert log.query(since=nine_hours_east.isoformat())["id"].tolist() == log.df["id"].tolist()[1:]
