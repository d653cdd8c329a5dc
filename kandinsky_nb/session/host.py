"""The part of a Session that a sweep uses, as a structural type.

``Session.sweep`` builds a :class:`~kandinsky_nb.session.plan.SweepPlan`, so ``session.py`` imports the sweep modules;
they name the session by this Protocol instead of importing ``session.py`` back (no circle, even for type checkers).
A type checker verifies that :class:`~kandinsky_nb.session.Session` satisfies it wherever a plan is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..planning import CellRef, CostModel
from ..runlog import RunLog
from ..types import Generation, ImageInferenceRequest
from .budget import Budget

__all__ = ["SweepHost"]


class SweepHost(Protocol):
    runs: RunLog
    budget: Budget
    concurrency: int

    @property
    def engine(self) -> str: ...

    @property
    def demo(self) -> bool: ...

    def check(self, request: ImageInferenceRequest) -> None: ...

    def cost_model(self) -> CostModel: ...

    def generate(
        self, prompt: str | None = None, *, request: ImageInferenceRequest | None = None, cell: CellRef | None = None
    ) -> Generation: ...

    async def agenerate(
        self, prompt: str | None = None, *, request: ImageInferenceRequest | None = None, cell: CellRef | None = None
    ) -> Generation: ...

    def generate_many(
        self, requests: Sequence[ImageInferenceRequest], *, cells: Sequence[CellRef | None] | None = None
    ) -> list[Generation | Exception]: ...

    async def agenerate_many(
        self, requests: Sequence[ImageInferenceRequest], *, cells: Sequence[CellRef | None] | None = None
    ) -> list[Generation | Exception]: ...

    def resume(self, task: str | ImageInferenceRequest) -> Generation: ...

    async def aresume(self, task: str | ImageInferenceRequest) -> Generation: ...
