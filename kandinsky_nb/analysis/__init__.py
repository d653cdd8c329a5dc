"""Analysis over the run log: contact sheets, cost model and spend, plots."""

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

__all__ = [
    "ContactSheet",
    "LinearModel",
    "Placement",
    "axis_values",
    "contact_sheet",
    "cost_summary",
    "fit_cost",
    "fit_latency",
    "list_price",
    "list_price_for",
    "local_vs_cloud",
    "plot_cost",
    "plot_latency",
    "spend_by",
]
