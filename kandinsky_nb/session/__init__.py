"""The session layer: :class:`Session` (engine + run log + budget), engine choice, and sweeps bound to a session
(:class:`SweepPlan` and its runners). Pure planning (axes, cells, estimates, pricing) lives in
:mod:`kandinsky_nb.planning`."""

from .budget import Budget
from .engines import choose_engine, open_backend
from .plan import SweepPlan, cell_status
from .session import Session

__all__ = ["Budget", "Session", "SweepPlan", "cell_status", "choose_engine", "open_backend"]
