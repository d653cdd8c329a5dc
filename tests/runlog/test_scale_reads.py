"""Reading the run log at scale: dtypes from the schema (not from the values of one read), the same values as a bare
read, chunked reads, score columns by indexed lookup, and filters that an index answers (checked with EXPLAIN QUERY
PLAN). Each read test runs on both readers: the ADBC driver's (Arrow, the `fast` extra) and the sqlite3 module's.
No timings here: benchmarks/bench_runlog.py measures them against their baselines."""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import sys
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
from runlog_testkit import generation, request

from kandinsky_nb import spec
from kandinsky_nb.errors import ConfigurationError, MissingDependencyError, RunLogError, TaskError
from kandinsky_nb.runlog import UNANSWERED, RunLog, arrow_reader, store
from kandinsky_nb.runlog import frame as frames
from kandinsky_nb.runlog import metrics as scores
from kandinsky_nb.runlog.arrow_reader import ArrowReadError, read_tables

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


@pytest.fixture(params=["sqlite3", "adbc"])
def reader(request) -> str:
    """Each run-log reader in turn; the ADBC one where the `fast` extra is installed (the dev install has it)."""
    if request.param == "adbc":
        pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    return request.param


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
def test_dtypes_come_from_the_schema_even_when_a_column_is_all_null_or_the_log_is_empty(tmp_path, reader):
    empty = RunLog(tmp_path / "empty", reader=reader).df
    only_submitted = RunLog(tmp_path / "submitted", reader=reader)
    only_submitted.record_submitted(request(seed=None), engine="runware", demo=False)
    mixed = RunLog(tmp_path / "mixed", reader=reader)
    mixed_log(mixed)
    for frame in (empty, only_submitted.df, mixed.df):
        assert {name: frame[name].dtype for name in SCHEMA_DTYPES} == {
            name: pd.Series(dtype=dtype).dtype for name, dtype in SCHEMA_DTYPES.items()
        }
    assert list(empty.columns) == list(mixed.df.columns)


def test_values_match_a_bare_read_of_the_table(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
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


def test_analysis_columns(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
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
def test_score_columns_hold_the_newest_score_of_each_image(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
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


def test_runs_that_share_an_image_share_its_score_and_a_query_carries_scores(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
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
def test_query_returns_what_pandas_would_keep(tmp_path, options, reader):
    log = RunLog(tmp_path, reader=reader)
    mixed_log(log)
    expected = pandas_filter(log.df, options)
    assert len(expected) < len(log)  # every filter leaves rows out, so a no-op filter would fail
    pd.testing.assert_frame_equal(log.query(**options), expected)


def test_query_by_time_limit_and_order(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
    mixed_log(log)
    frame = log.df
    middle = frame["created_utc"].iloc[3]
    pd.testing.assert_frame_equal(log.query(since=middle), frame[frame["created_utc"] >= middle].reset_index(drop=True))
    before = log.query(until=middle.to_pydatetime().replace(tzinfo=None))  # no zone: read as UTC
    assert before["id"].tolist() == frame["id"].iloc[:3].tolist()
    assert log.query(since=(middle + timedelta(days=1)).isoformat()).empty
    assert log.query(limit=2, newest_first=True)["id"].tolist() == frame["id"].iloc[::-1][:2].tolist()
    assert log.query(sweep_id="foxes", limit=0).empty


def test_the_prompt_index_follows_inserts_rewrites_and_deletes(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
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


def test_an_older_log_gets_its_rows_into_the_new_indexes(tmp_path, reader):
    with RunLog(tmp_path, reader=reader) as log:
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
    with RunLog(tmp_path, reader=reader) as log:
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
def test_each_filter_is_answered_by_an_index(tmp_path, options, index, reader):
    log = RunLog(tmp_path, reader=reader)
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


def test_the_whole_log_is_a_scan_and_says_so(tmp_path, reader):
    # The checks above can fail: a plan with no filter reads the whole table, and every score along their index.
    plan = RunLog(tmp_path, reader=reader).query_plan()
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


def test_the_sql_condition_escape_hatch_still_reads_typed_rows_with_scores(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
    ids = mixed_log(log)
    log.record_metrics([score(ids["owl1"], 0.3)])
    frame = log.dataframe("engine = ? AND seed > ?", ("local", 10))
    assert frame["id"].tolist() == [ids["owl1"]]
    assert frame["score_ssim"].tolist() == [0.3]
    assert frame["seed"].dtype == "Int64"


def test_a_value_the_declared_type_cannot_read_is_named_with_the_fix(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
    ids = mixed_log(log)
    with sqlite3.connect(log.path) as db:  # REAL affinity keeps a text that is not a number as text
        db.execute("UPDATE runs SET cost_usd = 'about a cent' WHERE id = ?", (ids["fox1"],))
    with pytest.raises(RunLogError) as caught:
        log.dataframe()
    assert "'cost_usd'" in str(caught.value) and "numbers or NULL" in str(caught.value)
    assert "SELECT id, cost_usd, typeof(cost_usd) FROM runs" in str(caught.value)
    assert len(log.query(sweep_id="owls")) == 2  # the rows around it still read


def test_times_are_compared_in_utc(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
    mixed_log(log)
    second = log.df["created_utc"].iloc[1].to_pydatetime()
    nine_hours_east = second.astimezone(timezone(timedelta(hours=9)))  # the same instant, another wall-clock time
    assert log.query(since=nine_hours_east)["id"].tolist() == log.df["id"].tolist()[1:]
    assert log.query(since=nine_hours_east.isoformat())["id"].tolist() == log.df["id"].tolist()[1:]


# -- the two readers --------------------------------------------------------------------------------------------------
# The ADBC driver runs only in the reader's own process (runlog/arrow_reader.py), never in this one: its wheel links a
# second copy of SQLite, and two copies in one process break each other's locks on a WAL database.
def adbc_table(path, sql: str, batch_rows: int):
    """``sql`` read by the ADBC driver in Arrow batches of ``batch_rows`` rows (the driver types each column by the
    values of its first batch)."""
    pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    (table,) = read_tables(path, [(sql, None)], batch_rows=batch_rows)
    return table


def test_both_readers_build_the_same_frame(tmp_path):
    pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    ids = mixed_log(RunLog(tmp_path))
    RunLog(tmp_path).record_metrics([score(ids["fox0"], 0.5), score(ids["owl1"], 0.25, metric="psnr")])
    arrow, plain = RunLog(tmp_path, reader="adbc"), RunLog(tmp_path, reader="sqlite3")
    assert (arrow.reader, plain.reader) == ("adbc", "sqlite3")
    pd.testing.assert_frame_equal(arrow.df, plain.df)
    for options in ({"newest_first": True}, {"limit": 3, "newest_first": True}, {"sweep_id": "owls"}, {"limit": 0}):
        pd.testing.assert_frame_equal(arrow.query(**options), plain.query(**options))
    condition = ("engine = ? AND seed > ?", ("local", 10))
    pd.testing.assert_frame_equal(arrow.dataframe(*condition), plain.dataframe(*condition))


def test_the_typed_first_row_lets_a_column_null_in_the_first_batch_read_its_later_text(tmp_path):
    log = RunLog(tmp_path)
    mixed_log(log)  # error_code is NULL in the first rows; the failed request (row 7) has one
    columns, kinds = list(log._run_columns), log._column_kinds
    # Without the typed row the driver types error_code by its first batch (all NULL: int64) and refuses the text.
    with pytest.raises(ArrowReadError, match="Type mismatch"):
        adbc_table(log.path, frames.select_sql(columns), batch_rows=2)
    table = adbc_table(log.path, frames.arrow_select_sql(columns, kinds), batch_rows=2)
    with sqlite3.connect(log.path) as db:
        expected = frames.read_frame(db.execute(frames.select_sql(columns)), kinds, tmp_path)
    arrow = frames.frame_from_arrow(table, kinds, tmp_path)
    pd.testing.assert_frame_equal(arrow, expected)
    assert arrow["error_code"].dropna().tolist() == ["invalidPrompt"]


def test_a_later_batch_value_of_another_type_is_named_by_its_column(tmp_path):
    log = RunLog(tmp_path)
    ids = mixed_log(log)
    with sqlite3.connect(log.path) as db:
        db.execute("UPDATE runs SET cost_usd = 'about a cent' WHERE id = ?", (ids["owl1"],))
    columns, kinds = list(log._run_columns), log._column_kinds
    with pytest.raises(ArrowReadError) as caught:  # row 6 comes in the third batch of 2, after the typed row
        adbc_table(log.path, frames.arrow_select_sql(columns, kinds), batch_rows=2)
    assert caught.value.mismatch and caught.value.query == 0
    error = frames.type_mismatch_error(str(caught.value), columns, kinds)
    assert error is not None and "'cost_usd'" in str(error) and "numbers or NULL" in str(error)
    assert frames.type_mismatch_error("disk I/O error", columns, kinds) is None


def test_scores_that_start_with_empty_values_read_on_the_arrow_reader(tmp_path, monkeypatch):
    """The driver types a column by its first batch: a batch of NULL score values first must not type ``value`` as
    an integer and refuse the real scores after it (the scores' query leads with a typed row too)."""
    pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    log = RunLog(tmp_path, reader="adbc")
    ids = mixed_log(log)
    # "aesthetic" sorts first; its images scored without a value, then "ssim" with one.
    log.record_metrics([score(ids["fox0"], None, metric="aesthetic"), score(ids["fox1"], None, metric="aesthetic")])
    log.record_metrics([score(ids["owl0"], 0.75), score(ids["owl1"], 0.5)])
    monkeypatch.setattr(arrow_reader, "BATCH_ROWS", 2)  # the NULLs fill the first batches
    frame = log.df.set_index("id")
    pd.testing.assert_frame_equal(frame, RunLog(tmp_path, reader="sqlite3").df.set_index("id"))
    assert frame.loc[ids["owl0"], "score_ssim"] == 0.75 and pd.isna(frame.loc[ids["fox0"], "score_aesthetic"])


def test_the_child_names_the_query_that_failed(tmp_path):
    pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    log = RunLog(tmp_path, reader="adbc")
    mixed_log(log)
    with pytest.raises(ArrowReadError) as caught:
        read_tables(log.path, [("SELECT 1 AS one", None), ("SELECT * FROM no_such_table", None)])
    assert caught.value.query == 1 and "no_such_table" in str(caught.value) and not caught.value.mismatch


def test_a_parameter_taken_from_a_frame_selects_what_the_number_would(tmp_path, reader):
    # df["seed"].iloc[0] is a numpy scalar: the sqlite3 module binds numpy.int64 as a BLOB, which no seed equals.
    log = RunLog(tmp_path, reader=reader)
    mixed_log(log)
    seed = log.df["seed"].dropna().iloc[0]
    assert not isinstance(seed, int)  # numpy's, as a user gets it
    expected = log.dataframe("seed > ?", (int(seed),))
    assert len(expected) > 0
    pd.testing.assert_frame_equal(log.dataframe("seed > ?", (seed,)), expected)
    assert [row["id"] for row in log.rows("seed > ?", (seed,))] == expected["id"].tolist()


def test_the_arrow_reader_leaves_the_open_writers_log_intact(tmp_path):
    """The hazard that kept the driver out of this process: an in-process ADBC connection, on closing, deleted the
    -wal and -shm files under the RunLog's open writer, and the next write died of SIGBUS. In its own process the
    driver is one more reader of a WAL database."""
    pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    log = RunLog(tmp_path, reader="adbc")
    mixed_log(log)
    wal, shm = log.path.with_name(log.path.name + "-wal"), log.path.with_name(log.path.name + "-shm")
    for round_number in range(3):
        before = len(log)
        frame = log.df
        assert len(frame) == before and wal.exists() and shm.exists()
        log.record_submitted(request(positivePrompt=f"a lynx, round {round_number}"), engine="runware", demo=False)
        assert len(log) == before + 1
    assert log.query(prompt_contains="lynx")["prompt"].tolist() == [f"a lynx, round {n}" for n in range(3)]
    with sqlite3.connect(log.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_failed_arrow_read_is_a_run_log_error_and_auto_falls_back_to_sqlite3(tmp_path, monkeypatch):
    pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    log = RunLog(tmp_path, reader="adbc")
    mixed_log(log)
    expected = RunLog(tmp_path, reader="sqlite3").df
    # The child starts with a Python that cannot run it: its failure must reach the caller, not hang or vanish.
    monkeypatch.setattr(arrow_reader.sys, "executable", sys.executable + "-missing")
    with pytest.raises(RunLogError) as caught:
        log.dataframe()
    assert "Arrow reader" in str(caught.value) and "reader='sqlite3'" in str(caught.value)
    auto = RunLog(tmp_path)
    monkeypatch.setattr(store, "ARROW_MIN_ROWS", 1)  # a big log, as far as "auto" is concerned
    with pytest.warns(RuntimeWarning, match="sqlite3 reader instead"):
        pd.testing.assert_frame_equal(auto.df, expected)


def test_auto_reads_a_big_log_through_the_arrow_reader_and_a_small_one_in_process(tmp_path, monkeypatch):
    pytest.importorskip("adbc_driver_sqlite", reason="the ADBC reader needs the `fast` extra")
    log = RunLog(tmp_path)
    mixed_log(log)
    started = []
    real = store.read_tables
    monkeypatch.setattr(store, "read_tables", lambda *args, **kwargs: started.append(1) or real(*args, **kwargs))
    small = log.df
    assert started == []
    monkeypatch.setattr(store, "ARROW_MIN_ROWS", len(log))
    pd.testing.assert_frame_equal(log.df, small)
    assert started == [1]
    log.query(sweep_id="owls")  # a filter reads few rows: in process
    assert started == [1]


def test_the_reader_is_chosen_by_what_is_installed_and_a_wrong_name_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigurationError) as caught:
        RunLog(tmp_path, reader="arrow")
    assert "reader 'arrow'" in str(caught.value) and "'auto', 'adbc', 'sqlite3'" in str(caught.value)
    assert RunLog(tmp_path, reader="sqlite3").reader == "sqlite3"
    # Without the driver (a None entry in sys.modules: the import system finds no such module), auto falls back.
    monkeypatch.setitem(sys.modules, "adbc_driver_sqlite", None)
    assert RunLog(tmp_path).reader == "sqlite3"
    with pytest.raises(MissingDependencyError) as missing:
        RunLog(tmp_path, reader="adbc")
    assert "pip install 'kandinsky-nb[fast]'" in str(missing.value)
    assert "adbc_driver_sqlite" in str(missing.value)
    monkeypatch.delitem(sys.modules, "adbc_driver_sqlite")
    if importlib.util.find_spec("adbc_driver_sqlite") is not None:
        assert RunLog(tmp_path).reader == "auto"


def test_a_time_written_without_a_zone_reads_as_utc_on_both_readers(tmp_path, reader):
    log = RunLog(tmp_path, reader=reader)
    ids = mixed_log(log)
    with sqlite3.connect(log.path) as db:  # as an older toolkit or a hand edit may have left it
        db.execute("UPDATE runs SET created_utc = '2026-11-25T12:00:00' WHERE id = ?", (ids["owl0"],))
    created = log.df.set_index("id")["created_utc"]
    assert created.dtype == "datetime64[us, UTC]"
    assert created[ids["owl0"]] == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert created.notna().all()
