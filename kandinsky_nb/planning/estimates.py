"""What a request or a sweep will take, as plain values (computed by :mod:`.pricing` and the Session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Estimate", "SweepEstimate"]


@dataclass(frozen=True)
class Estimate:
    """What a request will take: images, USD (and where the figure comes from), seconds if known."""

    images: int
    cost_usd: float
    cost_source: str
    seconds: float | None = None
    requests: int = 1

    def __str__(self) -> str:
        time_part = f", about {self.seconds:.0f} s" if self.seconds is not None else ""
        return (
            f"{self.requests} request(s), {self.images} image(s), ${self.cost_usd:.4f} ({self.cost_source}){time_part}"
        )


@dataclass(frozen=True)
class SweepEstimate:
    """What a sweep will take. ``*_to_run`` counts only cells not finished yet (what a run or resume would send)."""

    name: str
    cells: int
    images: int
    cost_usd: float
    cells_to_run: int
    images_to_run: int
    cost_to_run_usd: float
    cost_source: str
    seconds_to_run: float | None
    budget_left_usd: float | None

    @property
    def within_budget(self) -> bool:
        return self.budget_left_usd is None or self.cost_to_run_usd <= self.budget_left_usd + 1e-12

    def __str__(self) -> str:
        time_part = f", about {self.seconds_to_run:.0f} s" if self.seconds_to_run is not None else ""
        budget = (
            ""
            if self.budget_left_usd is None
            else f"; budget left ${self.budget_left_usd:.4f}" + ("" if self.within_budget else " (NOT ENOUGH)")
        )
        return (
            f"sweep {self.name!r}: {self.cells} cells, {self.images} images, ${self.cost_usd:.4f} in all; "
            f"to run now {self.cells_to_run} cells, {self.images_to_run} images, ${self.cost_to_run_usd:.4f}"
            f"{time_part} ({self.cost_source}){budget}"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))
