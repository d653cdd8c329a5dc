"""Scores as run-log data: the metrics migration on an older log, upserts that never store a score twice, the
``score_*`` columns of ``df``, what is still to score, and several writers at once."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest
from runlog_testkit import generation, request

from kandinsky_nb.errors import RunLogError
from kandinsky_nb.runlog import MIGRATIONS, RunLog, metric_column, migrate

HERE = Path(__file__).resolve().parent


def logged(log: RunLog, *seeds: int, image_format: str = "PNG", sweep_id: str | None = None) -> list[int]:
    """Log one ok run per seed; returns their row ids."""
    ids = []
    for seed in seeds:
        ids += log.record_generation(
            generation(request(seed=seed), image_format=image_format), sweep_id=sweep_id, sweep_cell=str(seed)
        )
    return ids


def failed(log: RunLog) -> int:
    return log.record_failure(request(), RunLogError("refused"), engine="runware", demo=False)


def score(run_id: int, value: float | None, metric: str = "ssim", version: str = "1", reference: str = "") -> dict:
    return {"run_id": run_id, "metric": metric, "value": value, "scorer_version": version, "reference": reference}


def stored(log: RunLog) -> list[tuple]:
    with sqlite3.connect(log.path) as db:
        return db.execute(
            "SELECT image_sha256, metric, reference, scorer_version, value FROM metrics ORDER BY rowid"
        ).fetchall()


# -- migration -------------------------------------------------------------------------------------------------
def test_a_log_made_before_metrics_gains_the_table_and_keeps_its_rows(tmp_path):
    names = [m.__name__ for m in MIGRATIONS]
    before_metrics = MIGRATIONS[: names.index("m004_metrics")]
    # A log as the previous release left it: its migrations only, and a row written through its schema.
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)")
        for migration in before_metrics:
            migration(db)
            db.execute("INSERT INTO _migrations VALUES (?, 'then')", (migration.__name__,))
        db.execute(
            "INSERT INTO runs (created_utc, status, engine, model, task_uuid, request_json, image_sha256, seed) "
            "VALUES ('2026-01-01T00:00:00+00:00', 'ok', 'runware', 'm', 'old-task', '{}', 'abc', 4)"
        )
        assert "metrics" not in {row[0] for row in db.execute("SELECT name FROM sqlite_master")}

    with RunLog(tmp_path) as log:
        [old] = log.get("old-task")
        assert (old["seed"], old["image_sha256"]) == (4, "abc")
        assert log.record_metrics([score(old["id"], 0.5)]) == 1
        new_id = logged(log, 1)[0]
        log.record_metrics([score(new_id, 0.25)])
        frame = log.df.set_index("id")
        assert frame.loc[old["id"], "score_ssim"] == 0.5
        assert frame.loc[new_id, "score_ssim"] == 0.25
    with sqlite3.connect(tmp_path / "runs.db") as db:
        applied = [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert applied == names


def test_migrating_twice_adds_nothing(tmp_path):
    db = sqlite3.connect(":memory:", isolation_level=None)
    assert migrate(db) == [m.__name__ for m in MIGRATIONS]
    assert migrate(db) == []


# -- writing ---------------------------------------------------------------------------------------------------
def test_recording_the_same_score_again_updates_it_in_place(tmp_path):
    log = RunLog(tmp_path)
    first, second = logged(log, 1, 2)
    assert log.record_metrics([score(first, 0.5), score(second, 0.7)]) == 2
    assert log.record_metrics([score(first, 0.5), score(second, 0.7)]) == 2
    assert [row[-1] for row in stored(log)] == [0.5, 0.7]
    log.record_metrics([score(first, 0.9)])  # a recomputation overwrites the value; still one row per key
    assert [row[-1] for row in stored(log)] == [0.9, 0.7]
    # Another scorer version or reference is another key: stored beside the first, never over it.
    log.record_metrics([score(first, 0.1, version="2"), score(first, 0.2, reference="ref-sha")])
    assert len(stored(log)) == 4
    assert len(log.metrics(run_ids=[first])) == 3


def test_a_score_belongs_to_the_image_so_runs_sharing_it_share_the_score(tmp_path):
    log = RunLog(tmp_path)
    # BMP files carry no embedded parameters: two requests with one seed write byte-identical files.
    first, twin, other = logged(log, 3, 3, 4, image_format="BMP")
    rows = {row["id"]: row for row in log.rows()}
    assert rows[first]["image_sha256"] == rows[twin]["image_sha256"] != rows[other]["image_sha256"]

    assert log.missing_metrics([first, twin, other], "ssim", "1") == [first, other]  # one run per distinct image
    log.record_metrics([score(first, 0.8)])
    assert log.missing_metrics([first, twin, other], "ssim", "1") == [other]
    log.record_metrics([score(twin, 0.8)])
    assert len(stored(log)) == 1
    frame = log.df.set_index("id")
    assert frame.loc[[first, twin], "score_ssim"].tolist() == [0.8, 0.8]
    assert math.isnan(frame.loc[other, "score_ssim"])


def test_one_bad_row_stores_none_of_the_batch(tmp_path):
    log = RunLog(tmp_path)
    [good] = logged(log, 1)
    bad = failed(log)
    with pytest.raises(RunLogError, match=rf"run {bad} has no image to score.*status 'ok'"):
        log.record_metrics([score(good, 0.5), score(bad, 0.5)])
    with pytest.raises(RunLogError, match=r"run 999 has no image"):
        log.record_metrics([score(999, 0.5)])
    assert stored(log) == []


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (score(1, 0.5, metric="SSIM"), r"metric name 'SSIM' is not allowed.*lowercase"),
        (score(1, 0.5, metric="ssim-2"), r"metric name 'ssim-2' is not allowed"),
        (score(1, "high"), r"score row 0: value 'high' is not a number.*None"),
        (score(1, 0.5, version=""), r"score row 0: scorer_version '' is not allowed: pass a non-empty string"),
        (score(1, 0.5, reference=None), r"score row 0: reference None is not allowed"),
        (score(True, 0.5), r"score row 0: run_id True is not a run id"),
        ({"run_id": 1, "metric": "ssim", "value": 0.5}, r"score row 0 has no scorer_version"),
        ({**score(1, 0.5), "model": "x"}, r"score row 0 has unknown fields \['model'\]"),
    ],
)
def test_bad_score_rows_name_the_field_the_value_and_the_fix(tmp_path, row, message):
    log = RunLog(tmp_path)
    logged(log, 1)
    with pytest.raises(RunLogError, match=message):
        log.record_metrics([row])
    assert stored(log) == []


def test_none_infinity_and_nan_values(tmp_path):
    log = RunLog(tmp_path)
    unscorable, identical, nan = logged(log, 1, 2, 3)
    log.record_metrics([score(unscorable, None), score(identical, math.inf), score(nan, math.nan)])
    # None and NaN mean "scored, no value": stored, so they are not computed again.
    assert log.missing_metrics([unscorable, identical, nan], "ssim", "1") == []
    frame = log.df.set_index("id")
    assert frame.loc[identical, "score_ssim"] == math.inf
    assert frame[["score_ssim"]].isna().sum().item() == 2


def test_a_dataframe_of_scores_is_accepted(tmp_path):
    log = RunLog(tmp_path)
    ids = logged(log, 1, 2)
    frame = pd.DataFrame({"run_id": ids, "metric": "sharpness", "value": [1.5, 2.5], "scorer_version": "1"})
    assert log.record_metrics(frame) == 2
    assert log.df["score_sharpness"].tolist() == [1.5, 2.5]


# -- reading ---------------------------------------------------------------------------------------------------
def test_df_has_one_float_column_per_metric_with_the_newest_score(tmp_path):
    log = RunLog(tmp_path)
    assert not [c for c in log.df.columns if c.startswith("score_")]  # no metric stored: no column
    a, b, c = logged(log, 1, 2, 3, sweep_id="s")
    bad = failed(log)
    log.record_metrics([score(a, 0.5), score(b, 0.6), score(a, 12.0, metric="sharpness")])
    log.record_metrics([score(a, 0.55, version="2")])  # computed later: it is the newest
    frame = log.df.set_index("id")
    assert [col for col in frame.columns if col.startswith("score_")] == ["score_sharpness", "score_ssim"]
    assert frame["score_ssim"].dtype == float
    assert frame.loc[a, "score_ssim"] == 0.55
    assert frame.loc[b, "score_ssim"] == 0.6
    assert frame.loc[[c, bad], "score_ssim"].isna().all()
    assert frame.loc[a, "score_sharpness"] == 12.0
    assert list(frame.index) == [a, b, c, bad]  # the join keeps the log's order and rows

    # A filtered frame carries the scores of its own rows.
    sweep = log.dataframe("sweep_id = ?", ("s",))
    assert sweep["id"].tolist() == [a, b, c]
    assert sweep["score_ssim"].tolist()[:2] == [0.55, 0.6]
    assert metric_column("ssim") == "score_ssim"


def test_scores_survive_export(tmp_path):
    log = RunLog(tmp_path)
    [run] = logged(log, 1)
    log.record_metrics([score(run, 0.42)])
    exported = pd.read_csv(log.export(tmp_path / "out.csv"))
    assert exported["score_ssim"].tolist() == [0.42]


def test_metrics_long_form_filters(tmp_path):
    log = RunLog(tmp_path)
    a, b = logged(log, 1, 2)
    log.record_metrics(
        [score(a, 0.5, reference="ref"), score(b, 0.6, reference="ref"), score(a, 3.0, metric="sharpness")]
    )
    log.record_metrics([score(a, 0.4, reference="ref", version="2")])
    everything = log.metrics()
    assert list(everything.columns) == [
        "run_id",
        "image_sha256",
        "metric",
        "reference",
        "scorer_version",
        "value",
        "computed_utc",
    ]
    assert len(everything) == 4
    assert str(everything["computed_utc"].dtype).startswith("datetime64")
    assert log.metrics(run_ids=[b])["value"].tolist() == [0.6]
    assert log.metrics(metric="sharpness")["run_id"].tolist() == [a]
    assert sorted(log.metrics(metric=["ssim", "sharpness"])["value"]) == [0.4, 0.5, 0.6, 3.0]
    assert log.metrics(reference="ref", scorer_version="1")["value"].tolist() == [0.5, 0.6]
    assert log.metrics(run_ids=[]).empty


def test_missing_metrics_per_reference_and_scorer_version(tmp_path):
    log = RunLog(tmp_path)
    a, b, c = logged(log, 1, 2, 3)
    bad = failed(log)
    every = [a, b, c, bad, 12345]
    assert log.missing_metrics(every, "ssim", "1") == [a, b, c]  # no image, no score to compute
    log.record_metrics([score(a, 0.9, reference="ref-1")])
    assert log.missing_metrics(every, "ssim", "1", reference="ref-1") == [b, c]
    assert log.missing_metrics(every, "ssim", "1", reference="ref-2") == [a, b, c]
    assert log.missing_metrics(every, "ssim", "2", reference="ref-1") == [a, b, c]  # a new version scores again
    assert log.missing_metrics(every, "psnr", "1", reference="ref-1") == [a, b, c]
    # Each run against its own reference cell.
    per_run = {a: "ref-1", b: "ref-1", c: "ref-2"}
    assert log.missing_metrics(per_run, "ssim", "1", reference=per_run) == [b, c]
    with pytest.raises(RunLogError, match=rf"run {c} has no entry in reference"):
        log.missing_metrics([a, c], "ssim", "1", reference={a: "ref-1"})
    assert log.missing_metrics([], "ssim", "1") == []


# -- several writers -------------------------------------------------------------------------------------------
SCORER = textwrap.dedent(
    """
    import sys
    from kandinsky_nb.runlog import RunLog

    log = RunLog({home!r})
    ids = [row["id"] for row in log.rows("status = 'ok'")]
    for start in range(0, len(ids), 7):
        chunk = ids[start : start + 7]
        # Both writers score the same key (ssim) and one key of their own.
        rows = [dict(run_id=i, metric="ssim", value=i + {offset}, scorer_version="1") for i in chunk]
        rows += [dict(run_id=i, metric="mine_{tag}", value=float(i), scorer_version="1") for i in chunk]
        log.record_metrics(rows)
    """
)


def test_two_processes_scoring_one_log_store_each_score_once(tmp_path):
    with RunLog(tmp_path) as log:
        ids = logged(log, *range(60))
    writers = [
        subprocess.Popen([sys.executable, "-c", SCORER.format(home=str(tmp_path), offset=offset, tag=tag)])
        for offset, tag in ((0.25, "a"), (0.5, "b"))
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    with RunLog(tmp_path) as log:
        long = log.metrics()
        frame = log.df.set_index("id")
    assert long.groupby("metric").size().to_dict() == {"mine_a": 60, "mine_b": 60, "ssim": 60}
    assert not long.duplicated(["image_sha256", "metric", "reference", "scorer_version"]).any()
    # Whichever writer came last holds each ssim value; nothing is half of one and half of the other.
    assert ((frame.loc[ids, "score_ssim"] - frame.loc[ids].index).isin([0.25, 0.5])).all()
    assert (frame.loc[ids, "score_mine_a"] == frame.loc[ids].index).all()


def test_a_background_scorer_thread_beside_a_logging_sweep(tmp_path):
    log = RunLog(tmp_path)
    first = logged(log, *range(20))
    errors: list[BaseException] = []

    def scorer() -> None:
        try:
            while todo := log.missing_metrics(first, "sharpness", "1"):
                log.record_metrics([score(run_id, float(run_id), metric="sharpness") for run_id in todo[:3]])
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    thread = threading.Thread(target=scorer)
    thread.start()
    later = logged(log, *range(100, 130))  # the sweep keeps logging on the same RunLog meanwhile
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert errors == []
    frame = log.df.set_index("id")
    assert (frame.loc[first, "score_sharpness"] == first).all()
    assert frame.loc[later, "score_sharpness"].isna().all()
    assert len(frame) == 50


def test_two_logs_registering_one_sweep_name_at_once_store_one_definition(tmp_path):
    RunLog(tmp_path).close()
    barrier = threading.Barrier(4)
    answers: dict[int, object] = {}

    def register(number: int) -> None:
        with RunLog(tmp_path) as log:  # a connection each, as separate processes would have
            barrier.wait()
            answers[number] = log.register_sweep("fox", {"writer": number})

    threads = [threading.Thread(target=register, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [n for n, answer in answers.items() if answer is None]
    assert len(winners) == 1
    assert all(answer == {"writer": winners[0]} for n, answer in answers.items() if n != winners[0])
    with RunLog(tmp_path) as log:
        assert log.sweep_definition("fox") == {"writer": winners[0]}
