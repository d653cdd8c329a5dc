"""Pure planning, below the engines: sweep axes and their values, cells with stable identities, estimates, typed
cell outcomes, and pricing (the list price and THE one cost/latency model). No I/O: Session, analysis and panels all
call it."""

from .axes import AXES, Axis, grid_layout, parse_axes, resolve_axis
from .cells import (
    MAX_CELLS,
    CellJob,
    CellRef,
    SweepCell,
    build_request,
    cell_key,
    check_count,
    check_plan_size,
    expand_cells,
)
from .estimates import Estimate, SweepEstimate
from .outcomes import CellOutcome, CellState, CellStatus, Outcome, SweepReport
from .pricing import CostModel, LinearModel, estimate, fit_cost, fit_latency, fit_linear, list_price, work_units
from .ranges import MAX_VALUES_PER_AXIS, parse_axis_values
from .sweep import SweepDesign, check_same_sweep, check_sweep_name, design_sweep

__all__ = [
    "AXES",
    "MAX_CELLS",
    "MAX_VALUES_PER_AXIS",
    "Axis",
    "CellJob",
    "CellOutcome",
    "CellRef",
    "CellState",
    "CellStatus",
    "CostModel",
    "Estimate",
    "LinearModel",
    "Outcome",
    "SweepCell",
    "SweepDesign",
    "SweepEstimate",
    "SweepReport",
    "build_request",
    "cell_key",
    "check_count",
    "check_plan_size",
    "check_same_sweep",
    "check_sweep_name",
    "design_sweep",
    "estimate",
    "expand_cells",
    "fit_cost",
    "fit_latency",
    "fit_linear",
    "grid_layout",
    "list_price",
    "parse_axes",
    "parse_axis_values",
    "resolve_axis",
    "work_units",
]
