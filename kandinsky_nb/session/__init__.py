"""The engine layer: :class:`Session` (engine + run log + budget), sweeps, ranges and pricing."""

from .budget import Budget
from .engines import choose_engine, open_backend
from .pricing import LinearModel, fit_linear, list_price
from .ranges import parse_axis_values
from .session import Estimate, Session
from .sweep import SweepCell, SweepEstimate, SweepPlan, SweepReport

__all__ = [
    "Budget",
    "Estimate",
    "LinearModel",
    "Session",
    "SweepCell",
    "SweepEstimate",
    "SweepPlan",
    "SweepReport",
    "choose_engine",
    "fit_linear",
    "list_price",
    "open_backend",
    "parse_axis_values",
]
