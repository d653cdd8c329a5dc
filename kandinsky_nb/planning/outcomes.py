"""Typed states and outcomes of sweep cells, and the report that tallies them.

A cell's *state* is what the run log says about it (ok, pending, failed, new); a cell's *outcome* is what one run of
the sweep did with it (sent, resumed by its taskUUID, failed, not run). Both are string enums, so they compare equal to
their plain names (``state == "ok"``) and print as them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .cells import CellJob

__all__ = ["CellOutcome", "CellState", "CellStatus", "Outcome", "SweepReport"]


class CellState(enum.StrEnum):
    """What the run log says about a cell."""

    OK = "ok"
    PENDING = "pending"  # sent, never answered in the log: looked up by its taskUUID before anything is sent
    FAILED = "failed"
    NEW = "new"


class CellStatus(NamedTuple):
    """A cell's state and the log row that decided it (None for a new cell)."""

    state: CellState
    row: dict[str, Any] | None


class Outcome(enum.StrEnum):
    """What one run of a sweep did with a cell."""

    SENT = "sent"
    RESUMED = "resumed"  # fetched by the taskUUID it was sent with earlier, not paid again
    FAILED = "failed"
    NOT_RUN = "not run"  # cancelled or stopped by the budget before it started; it stays to do


@dataclass(frozen=True)
class CellOutcome:
    job: CellJob
    outcome: Outcome
    error: Exception | None = None

    @classmethod
    def failed(cls, job: CellJob, error: Exception) -> CellOutcome:
        return cls(job, Outcome.FAILED, error)


def _describe(error: Exception | None) -> str:
    """An error's type and message, with the notes that say what it meant for the run."""
    notes = getattr(error, "__notes__", None) or []
    return " ".join([f"{type(error).__name__}: {error}", *notes])


@dataclass
class SweepReport:
    """The outcome of one run of a sweep."""

    name: str
    ok: int = 0
    failed: int = 0
    resumed: int = 0
    skipped_done: int = 0
    not_run: int = 0
    spent_usd: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str | None = None

    def add(self, outcome: CellOutcome) -> None:
        """Count one cell's outcome (a failed one with its coordinates, taskUUID and error)."""
        if outcome.outcome is Outcome.NOT_RUN:
            self.not_run += 1
        elif outcome.outcome is Outcome.FAILED:
            self.failed += 1
            self.errors.append(
                {
                    "cell": outcome.job.cell.coords,
                    "task_uuid": outcome.job.request.taskUUID,
                    "error": _describe(outcome.error),
                }
            )
        else:
            self.ok += 1
            self.resumed += int(outcome.outcome is Outcome.RESUMED)

    def __str__(self) -> str:
        stop = f"; stopped: {self.stopped_by}" if self.stopped_by else ""
        return (
            f"sweep {self.name!r}: {self.ok} ok ({self.resumed} recovered by taskUUID), {self.failed} failed, "
            f"{self.skipped_done} already done, {self.not_run} not run; ${self.spent_usd:.4f} spent{stop}"
        )
