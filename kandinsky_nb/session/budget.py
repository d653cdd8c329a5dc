"""The spending cap: reserve before sending, settle with the real cost after, and learn the real price first.

``spent + reserved`` never passes ``cap`` when a reservation is made, so the cap holds at any concurrency: the check
and the reservation happen together under one lock, and nothing awaits while holding it (so one lock serves threads
and asyncio tasks alike).

A reservation must cover what the engine will really charge, which the list price does not promise (a server may
charge 3x it). So the budget learns the price from the answers, as a rate in USD per unit of work (megapixel-steps x
images, :func:`kandinsky_nb.planning.pricing.work_units`), and reserves ``max(estimate, observed rate x work) x
margin``. Until a first answer has taught it the rate, a capped budget lets ONE reservation be in flight at a time
(the probe): concurrent callers wait for its answer instead of committing money at a price nobody has seen. An engine
that reports no cost teaches nothing, so its first answer opens the gate too (its holds are counted as spent).

A cap, a cost and a margin are finite numbers (``nan`` compares false with everything, so a ``nan`` cap would be no
cap at all); anything else is refused when given.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import BudgetExceededError, ConfigurationError

__all__ = ["Budget", "Reservation", "is_cost"]

DEFAULT_MARGIN = 1.25


def is_cost(value: Any) -> bool:
    """Whether ``value`` is a usable USD amount: a finite real number of at least 0 (not a bool, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


@dataclass
class Reservation:
    """A hold on the cap: ``amount`` USD for ``work`` units of work. ``probe``: the one reservation allowed in flight
    while the price is still unknown."""

    amount: float
    work: float = 0.0
    probe: bool = False
    settled: bool = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class Budget:
    """A cap in USD (``None`` = no cap, still counting). ``spent`` is settled cost; ``reserved`` is in flight;
    ``rate`` is the highest price per unit of work the engine has charged so far (None until an answer says)."""

    cap: float | None = None
    margin: float = DEFAULT_MARGIN
    spent: float = 0.0
    reserved: float = 0.0
    rate: float | None = None
    _answered: bool = field(default=False, init=False, repr=False)
    _probing: bool = field(default=False, init=False, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False, compare=False)
    _async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.cap is not None and not is_cost(self.cap):
            raise ConfigurationError(
                f"budget={self.cap!r} is not allowed: a cap is a finite number of USD of at least 0; "
                "use budget=None for no cap"
            )
        if not (is_cost(self.margin) and self.margin >= 1):
            raise ConfigurationError(
                f"margin={self.margin!r} is not allowed: a reservation must hold at least the estimate; use a finite "
                "number of 1 or more"
            )

    @property
    def left(self) -> float | None:
        return None if self.cap is None else max(self.cap - self.spent - self.reserved, 0.0)

    @property
    def learning(self) -> bool:
        """True while a capped budget has seen no answer yet: reservations go out one at a time."""
        return self.cap is not None and not self._answered

    def expected(self, estimate: float, work: float = 0.0) -> float:
        """What a request of ``estimate`` USD and ``work`` units is expected to cost: the estimate, or the price the
        engine has been seen to charge for that much work when that is higher."""
        if not (is_cost(estimate) and is_cost(work)):
            # A NaN here would make every comparison with the cap false, and so pass it: refuse it instead.
            raise ConfigurationError(
                f"estimate={estimate!r}, work={work!r}: a request's estimate and work must be finite numbers of at "
                "least 0; check the cost model the estimate came from (session.cost_model())"
            )
        return max(estimate, (self.rate or 0.0) * work)

    def amount(self, estimate: float, work: float = 0.0) -> float:
        """What a reservation for ``estimate`` USD and ``work`` units holds: :meth:`expected` times the margin."""
        return self.expected(estimate, work) * self.margin

    def check(self, estimate: float, what: str = "this run", *, work: float = 0.0) -> None:
        """Raise BudgetExceededError if ``estimate`` (at the learned price, with its margin) does not fit; reserves
        nothing."""
        with self._changed:
            self._fit(self.amount(estimate, work), what)

    def _fit(self, amount: float, what: str) -> None:
        if self.cap is not None and self.spent + self.reserved + amount > self.cap + 1e-12:
            raise BudgetExceededError(needed=amount, spent=self.spent + self.reserved, cap=self.cap, what=what)

    def _try_reserve(self, estimate: float, work: float, what: str, *, wait: bool) -> Reservation | None:
        """Under the lock: a reservation, None when it must wait for the probe's answer, or BudgetExceededError."""
        if self.learning and self._probing and wait:
            return None
        probe = self.learning and not self._probing
        amount = self.amount(estimate, work)
        self._fit(amount, what)
        self.reserved += amount
        self._probing = self._probing or probe
        return Reservation(amount, work, probe=probe)

    @staticmethod
    def _on_loop_thread() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def reserve(self, estimate: float, what: str = "this request", *, work: float = 0.0) -> Reservation:
        """Hold the cost of a request (see :meth:`amount`), or raise BudgetExceededError (nothing is held then).
        While the price is being learned, waits for the probe's answer first."""
        # A thread that runs an event loop must not block: the probe may be an asyncio task on that very loop. There
        # the reservation goes ahead at the price known so far (the margin is its only cover).
        wait = not self._on_loop_thread()
        with self._changed:
            while (reservation := self._try_reserve(estimate, work, what, wait=wait)) is None:
                self._changed.wait()
        return reservation

    async def areserve(self, estimate: float, what: str = "this request", *, work: float = 0.0) -> Reservation:
        """The async twin of :meth:`reserve`: waits for the probe's answer without blocking the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            with self._changed:
                reservation = self._try_reserve(estimate, work, what, wait=True)
                if reservation is not None:
                    return reservation
                woken: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, woken))
            await woken

    def _close(self, reservation: Reservation, spent: float, *, answered: bool) -> None:
        """Under the lock: release a reservation, count ``spent``, and wake whoever waits for the probe."""
        reservation.settled = True
        self.reserved -= reservation.amount
        self.spent += spent
        self._answered = self._answered or answered
        if reservation.probe:
            self._probing = False
        self._changed.notify_all()
        for loop, future in self._async_waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting there any more
                loop.call_soon_threadsafe(_wake, future)
        self._async_waiters.clear()

    def settle(self, reservation: Reservation, actual: float | None) -> None:
        """An answer came: count its real cost and learn the price from it (``None``: the engine reported no cost;
        the hold is counted). A cost that is not a finite number of at least 0 is refused (ConfigurationError): the
        Session turns such an answer into a failure and calls :meth:`forfeit` instead."""
        if actual is not None and not is_cost(actual):
            raise ConfigurationError(
                f"cost={actual!r} cannot be settled: a cost is a finite number of USD of at least 0; forfeit the "
                "reservation instead"
            )
        with self._changed:
            if reservation.settled:
                return
            if actual is not None and reservation.work > 0:
                self.rate = max(self.rate or 0.0, actual / reservation.work)
            self._close(reservation, reservation.amount if actual is None else actual, answered=True)

    def forfeit(self, reservation: Reservation) -> None:
        """No usable answer (dropped, timed out, cancelled, or an unusable cost): the request may have been charged,
        so the hold is counted as spent (the cap errs on the safe side). Nothing is learned about the price."""
        with self._changed:
            if not reservation.settled:
                self._close(reservation, reservation.amount, answered=False)

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the request was refused before anything could be charged)."""
        with self._changed:
            if not reservation.settled:
                self._close(reservation, 0.0, answered=False)

    def count(self, actual: float, work: float = 0.0) -> None:
        """Count a cost paid outside any reservation (a resumed task, paid when first sent), and learn from it."""
        self.settle(Reservation(0.0, work), actual)
