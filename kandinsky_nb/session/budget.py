"""The spending cap: reserve an estimate before sending, settle with the real cost after.

``spent + reserved`` never passes ``cap`` when a reservation is made, so the cap holds at any concurrency: the check
and the reservation happen together under one lock, and nothing awaits while holding it (so one ``threading.Lock``
serves threads and asyncio tasks alike). A reservation is the estimate times ``margin`` (default 1.25) because the
real cost of a run is known only afterwards; an answer costing more than that margin is still settled at its real
cost, and later reservations see it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..errors import BudgetExceededError, ConfigurationError

__all__ = ["Budget", "Reservation"]

DEFAULT_MARGIN = 1.25


@dataclass
class Reservation:
    amount: float
    settled: bool = False


@dataclass
class Budget:
    """A cap in USD (``None`` = no cap, still counting). ``spent`` is settled cost; ``reserved`` is in flight."""

    cap: float | None = None
    margin: float = DEFAULT_MARGIN
    spent: float = 0.0
    reserved: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cap is not None and self.cap < 0:
            raise ConfigurationError(
                f"budget={self.cap!r} is not allowed: a cap is USD of at least 0; use budget=None for no cap"
            )
        if self.margin < 1:
            raise ConfigurationError(
                f"margin={self.margin!r} is not allowed: a reservation must hold at least the estimate; use 1 or more"
            )

    @property
    def left(self) -> float | None:
        return None if self.cap is None else max(self.cap - self.spent - self.reserved, 0.0)

    def check(self, estimate: float, what: str = "this run") -> None:
        """Raise BudgetExceededError if ``estimate`` (with its margin) does not fit; reserves nothing."""
        with self._lock:
            self._check(estimate * self.margin, what)

    def _check(self, amount: float, what: str) -> None:
        if self.cap is not None and self.spent + self.reserved + amount > self.cap + 1e-12:
            raise BudgetExceededError(needed=amount, spent=self.spent + self.reserved, cap=self.cap, what=what)

    def reserve(self, estimate: float, what: str = "this request") -> Reservation:
        """Hold ``estimate * margin`` of the cap, or raise BudgetExceededError (nothing is held then)."""
        amount = max(estimate, 0.0) * self.margin
        with self._lock:
            self._check(amount, what)
            self.reserved += amount
        return Reservation(amount)

    def settle(self, reservation: Reservation, actual: float | None) -> None:
        """Release a reservation and count the real cost (``None``: the engine reported none, count the hold)."""
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            self.reserved -= reservation.amount
            self.spent += reservation.amount if actual is None else actual

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the request failed before anything could be charged)."""
        self.settle(reservation, 0.0)
