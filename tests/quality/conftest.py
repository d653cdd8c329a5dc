"""Fixtures of the quality tests: a fresh run log per test."""

from __future__ import annotations

import pytest

from kandinsky_nb.runlog import RunLog


@pytest.fixture
def runs(tmp_path):
    with RunLog(tmp_path / "home") as log:
        yield log
