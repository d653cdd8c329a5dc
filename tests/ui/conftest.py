"""Fixtures for the panel tests: a real Session on the offline demo engine, its run log in the test's own home."""

from __future__ import annotations

import pytest


@pytest.fixture
def demo_session(demo_backend, tmp_path):
    from kandinsky_nb.session import Session

    session = Session(engine=demo_backend, home=tmp_path / "home")
    yield session
    # The backend is shared by the whole test session: close only this session's run log.
    session.runs.close()


# The browser-test notebook needs a prepared server (demo engine, its own home); nbval must not run it on its own.
collect_ignore_glob = ["notebooks/*.ipynb"]
