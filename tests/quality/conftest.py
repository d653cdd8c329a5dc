"""Fixtures of the quality tests: a fresh run log per test."""

from __future__ import annotations

import pytest

from kandinsky_nb.runlog import RunLog


@pytest.fixture
def runs(tmp_path):
    with RunLog(tmp_path / "home") as log:
        yield log


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny RANDOM CLIP saved like a real checkpoint and marked as random weights (its scores are noise)."""
    pytest.importorskip("transformers", reason="needs the 'local' extra")
    from quality_testkit import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-random-clip"))
