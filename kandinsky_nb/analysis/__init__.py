"""Analysis over the run log: contact sheets, cost model and spend, quality against cost, plots."""

from .cost import (
    LinearModel,
    cost_summary,
    fit_cost,
    fit_latency,
    list_price,
    list_price_for,
    local_vs_cloud,
    plot_cost,
    plot_latency,
    spend_by,
)
from .grid import ContactSheet, Placement, axis_values, contact_sheet
from .quality import fewest_steps, pareto_frontier, plot_convergence, plot_frontier, recommend
from .scoring import score_runs, score_sweep, score_sweep_in_background

__all__ = [
    "ContactSheet",
    "LinearModel",
    "Placement",
    "axis_values",
    "contact_sheet",
    "cost_summary",
    "fewest_steps",
    "fit_cost",
    "fit_latency",
    "list_price",
    "list_price_for",
    "local_vs_cloud",
    "pareto_frontier",
    "plot_convergence",
    "plot_cost",
    "plot_frontier",
    "plot_latency",
    "recommend",
    "score_runs",
    "score_sweep",
    "score_sweep_in_background",
    "spend_by",
]
