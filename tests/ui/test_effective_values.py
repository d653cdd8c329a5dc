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


def test_loading_the_model_is_logged_apart_and_said_in_the_panel(demo_weights, tmp_path):
    from kandinsky_nb.backends.local import LocalBackend
    from kandinsky_nb.session import Session
    from kandinsky_nb.ui import GeneratePanel

    backend = LocalBackend.from_demo_weights(demo_weights)  # its own: the first request loads the pipeline
    session = Session(engine=backend, home=tmp_path / "home")
    try:
        panel = GeneratePanel(session)
        panel.update(positivePrompt="a red fox", steps=10, size="1K (1:1)")
        panel.generate()
        first = panel.generations[-1]
        assert first.details["load_seconds"] > 0
        assert "loading the model" in panel.status.value
        panel.generate()
        assert panel.generations[-1].details["load_seconds"] < first.details["load_seconds"]
        df = session.runs.df
        load = df["load_s"].tolist()
        assert load[0] == pytest.approx(first.details["load_seconds"]) and load[1] < load[0] / 2
        # latency_s is the generation alone, so the first run does not skew pivots and the latency fit.
        assert df["latency_s"].iloc[0] == pytest.approx(first.latency_s - first.details["load_seconds"])
    finally:
        session.close()
