"""The session layer: :class:`Session` (engine + run log + budget), engine choice, and sweeps bound to a session
(:class:`SweepPlan` and its runners). Pure planning (axes, cells, estimates, pricing) lives in
:mod:`kandinsky_nb.planning`."""

from .budget import Budget
from .engines import choose_engine, open_backend
from .lease import SweepBusyError, SweepLease
from .plan import SweepPlan, cell_status
from .session import Session, UnusableCostError

__all__ = [
    "Budget",
    "Session",
    "SweepBusyError",
    "SweepLease",
    "SweepPlan",
    "UnusableCostError",
    "cell_status",
    "choose_engine",
    "open_backend",
]
