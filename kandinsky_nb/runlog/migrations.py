"""The run log's schema history: named, ordered migrations, applied once each (the ``simonw/llm`` way).

A migration's function name is its identity, recorded in ``_migrations`` when it runs. Never edit or reorder a
migration that has shipped; append a new one. Each runs in its own transaction, so a crash leaves the schema either
before or after it, never half way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from .. import spec
from ..errors import RunLogError

__all__ = ["MIGRATIONS", "migrate"]

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


@migration
def m001_runs(db: sqlite3.Connection) -> None:
    # One row per generated image (result_index 0..numberResults-1) and one per failed or unanswered request.
    # Parameters are promoted to columns for queries; request_json/response_json keep the exact wire objects.
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_utc TEXT NOT NULL,
            finished_utc TEXT,
            status TEXT NOT NULL,
            engine TEXT NOT NULL,
            demo INTEGER NOT NULL DEFAULT 0,
            model TEXT NOT NULL,
            task_uuid TEXT NOT NULL,
            result_index INTEGER NOT NULL DEFAULT 0,
            number_results INTEGER NOT NULL DEFAULT 1,
            prompt TEXT,
            negative_prompt TEXT,
            width INTEGER,
            height INTEGER,
            steps INTEGER,
            CFGScale REAL,
            scheduler TEXT,
            seed INTEGER,
            accelerator_options TEXT,
            lora TEXT,
            error_type TEXT,
            error_code TEXT,
            error_message TEXT,
            latency_s REAL,
            cost_usd REAL,
            image_path TEXT,
            image_sha256 TEXT,
            image_uuid TEXT,
            image_format TEXT,
            sweep_id TEXT,
            sweep_cell TEXT,
            request_json TEXT NOT NULL,
            response_json TEXT,
            details_json TEXT,
            toolkit_version TEXT,
            UNIQUE (task_uuid, result_index)
        )
        """
    )
    db.execute("CREATE INDEX runs_sweep ON runs (sweep_id, sweep_cell)")
    db.execute("CREATE INDEX runs_created ON runs (created_utc)")


@migration
def m002_sweeps(db: sqlite3.Connection) -> None:
    # A sweep's definition, so a re-run by name can check it is the same sweep before skipping finished cells.
    db.execute(
        """
        CREATE TABLE sweeps (
            name TEXT PRIMARY KEY,
            created_utc TEXT NOT NULL,
            definition_json TEXT NOT NULL
        )
        """
    )


@migration
def m003_gpu_seconds(db: sqlite3.Connection) -> None:
    # Local runs report measured GPU seconds; kept as a column so local and cloud cost compare in one query.
    db.execute("ALTER TABLE runs ADD COLUMN gpu_seconds REAL")


@migration
def m004_metrics(db: sqlite3.Connection) -> None:
    # Scores of images (SSIM to a reference cell, sharpness, CLIP score, ...). Keyed on the image's content, not the
    # run: a score is a property of the pixels, so two runs with the same image share it and nothing is scored twice.
    # ``reference`` is what a comparison was made against ('' for a no-reference scorer), ``scorer_version`` lets a
    # changed scorer add new values beside the old ones. ``value`` NULL means "scored, no value", so it is not retried.
    # ``run_id`` only records which run the score was first computed for.
    db.execute(
        """
        CREATE TABLE metrics (
            image_sha256 TEXT NOT NULL,
            metric TEXT NOT NULL,
            reference TEXT NOT NULL DEFAULT '',
            scorer_version TEXT NOT NULL,
            value REAL,
            run_id INTEGER REFERENCES runs (id),
            computed_utc TEXT NOT NULL,
            PRIMARY KEY (image_sha256, metric, reference, scorer_version)
        )
        """
    )
    # runs.df joins scores to runs by image; without this index each join scans the runs table.
    db.execute("CREATE INDEX runs_image ON runs (image_sha256)")


@migration
def m005_read_indexes(db: sqlite3.Connection) -> None:
    # RunLog.query answers each filter from an index, so picking a sweep, a status or a prompt out of a million rows
    # reads only the rows it returns (runlog/query.py).
    db.execute("CREATE INDEX runs_status ON runs (status)")
    # The score columns of df: led by metric, so the metric names are found by seeks; then by image and computed time
    # (the rowid, last in every index, breaking ties), so walking it hands each (metric, image)'s newest score last
    # with no sort (runlog/metrics.py).
    db.execute("CREATE INDEX metrics_newest ON metrics (metric, image_sha256, computed_utc)")
    # Prompts: a full-text index with the trigram tokenizer (SQLite 3.34+) finds any substring of 3 characters or
    # more, case-insensitively. External content: the text stays in runs; triggers keep the index in step, and an
    # update rewrites the index only when the prompt changed (a submitted row becoming ok keeps its prompt).
    try:
        db.execute(
            "CREATE VIRTUAL TABLE runs_prompt USING fts5(prompt, content='runs', content_rowid='id', tokenize='trigram', columnsize=0)"
        )
    except sqlite3.OperationalError as exc:
        raise RunLogError(
            f"this Python's SQLite {sqlite3.sqlite_version} cannot build the run log's prompt index ({exc}): it needs "
            "FTS5 with the trigram tokenizer (SQLite 3.34+ built with FTS5). Use a Python whose SQLite has it "
            "(python.org, conda and Debian builds of 3.11+ do)."
        ) from exc
    db.execute("INSERT INTO runs_prompt (runs_prompt) VALUES ('rebuild')")
    # One statement per execute: executescript would commit the migration's transaction half way.
    db.execute(
        """CREATE TRIGGER runs_prompt_insert AFTER INSERT ON runs BEGIN
            INSERT INTO runs_prompt (rowid, prompt) VALUES (new.id, new.prompt);
        END"""
    )
    db.execute(
        """CREATE TRIGGER runs_prompt_delete AFTER DELETE ON runs BEGIN
            INSERT INTO runs_prompt (runs_prompt, rowid, prompt) VALUES ('delete', old.id, old.prompt);
        END"""
    )
    db.execute(
        """CREATE TRIGGER runs_prompt_update AFTER UPDATE OF prompt ON runs WHEN old.prompt IS NOT new.prompt BEGIN
            INSERT INTO runs_prompt (runs_prompt, rowid, prompt) VALUES ('delete', old.id, old.prompt);
            INSERT INTO runs_prompt (rowid, prompt) VALUES (new.id, new.prompt);
        END"""
    )


@migration
def m006_effective_values(db: sqlite3.Connection) -> None:
    # Which request fields were left to the model's default (a JSON list): their columns hold the effective value, so
    # filters, pivots and grids see "Euler", and this says it was the model's choice, not the person's.
    db.execute("ALTER TABLE runs ADD COLUMN defaulted TEXT")
    # Rows logged before this held NULL for a scheduler left to the model: give them the effective one too.
    db.execute(
        "UPDATE runs SET scheduler = ? WHERE scheduler IS NULL AND request_json IS NOT NULL "
        "AND json_extract(request_json, '$.scheduler') IS NULL",
        (spec.MODEL_DEFAULT_SCHEDULER,),
    )


@migration
def m007_load_seconds(db: sqlite3.Connection) -> None:
    # A first run also loads the model: that time is kept apart (load_s), so latency_s, which pivots and the latency
    # fit read, is the generation alone; the time a person waited is latency_s + load_s.
    db.execute("ALTER TABLE runs ADD COLUMN load_s REAL")


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet applied, in order; returns the names applied now."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)")
    applied_now: list[str] = []
    for function in MIGRATIONS:
        name = function.__name__
        # BEGIN IMMEDIATE takes the write lock first, so two processes opening a new log cannot both migrate.
        db.execute("BEGIN IMMEDIATE")
        try:
            done = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone()
            if not done:
                function(db)
                db.execute(
                    "INSERT INTO _migrations (name, applied_utc) VALUES (?, ?)", (name, datetime.now(UTC).isoformat())
                )
                applied_now.append(name)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return applied_now
