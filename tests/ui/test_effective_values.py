"""A run that left a field to the model is logged with the value the model used, and says it was defaulted: a filter
on ``scheduler == 'Euler'`` finds it, spend by scheduler has no NaN row, and the panels show the scheduler by name."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.local


def test_defaulted_fields_are_logged_with_their_effective_values(demo_session):
    from kandinsky_nb import analysis

    demo_session.generate("a red fox", width=1024, height=1024, steps=10)  # scheduler and CFG left to the model
    demo_session.generate("a red fox", width=1024, height=1024, steps=10, scheduler="Euler", CFGScale=5)
    df = demo_session.runs.df
    assert list(df["scheduler"]) == ["Euler", "Euler"]
    assert len(df.query("scheduler == 'Euler'")) == 2
    first, second = (json.loads(text) for text in df["defaulted"])
    assert {"scheduler", "CFGScale"} <= set(first) and "steps" not in first
    assert "scheduler" not in second and "CFGScale" not in second
    spend = analysis.spend_by(df, "scheduler")
    assert list(spend.index) == ["Euler"]


def test_an_older_log_gets_the_effective_scheduler(demo_session):
    import sqlite3

    from kandinsky_nb.runlog import RunLog

    demo_session.generate("a red fox", width=1024, height=1024, steps=10)
    path, home = demo_session.runs.path, demo_session.runs.home
    demo_session.runs.close()
    db = sqlite3.connect(path)
    # As a log written before m006: a scheduler left to the model stored as NULL, no defaulted column.
    db.execute("UPDATE runs SET scheduler = NULL")
    db.execute("ALTER TABLE runs DROP COLUMN defaulted")
    db.execute("DELETE FROM _migrations WHERE name = 'm006_effective_values'")
    db.commit()
    db.close()
    log = RunLog(home)
    try:
        assert list(log.df["scheduler"]) == ["Euler"]
    finally:
        log.close()
