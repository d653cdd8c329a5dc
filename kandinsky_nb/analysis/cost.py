"""Cost analysis over the run log: list price vs the costs actually logged, spend, and plots.

Every function takes a DataFrame of the log (``session.runs.df`` or any filtered part of it), so the analysis works
the same on a live session, an exported Parquet file, or a colleague's CSV. Plots return matplotlib Figures (built
without pyplot, so nothing global changes and notebooks display them as usual).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import spec
from ..planning import pricing
from ..planning.pricing import LinearModel, list_price

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "LinearModel",
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


def _ok(frame: pd.DataFrame, engine: str | None = None) -> pd.DataFrame:
    rows = frame[frame["status"] == "ok"]
    return rows if engine is None else rows[rows["engine"] == engine]


def list_price_for(frame: pd.DataFrame) -> pd.Series:
    """The list price of each row's image (:func:`kandinsky_nb.spec.list_price_estimate` per image)."""
    return frame.apply(lambda r: spec.list_price_estimate(int(r["width"]), int(r["height"]), int(r["steps"])), axis=1)


def fit_cost(frame: pd.DataFrame, engine: str | None = None, *, intercept: bool = True) -> LinearModel:
    """Least squares of logged cost per image on megapixel-steps (``cost = rate * MP * steps + base``), with R² and
    MAPE. ``engine`` limits the fit to one engine (cloud and local costs do not mix)."""
    rows = _ok(frame, engine)
    return pricing.fit_cost(rows["width"], rows["height"], rows["steps"], rows["cost_usd"], intercept=intercept)


def fit_latency(frame: pd.DataFrame, engine: str | None = None) -> LinearModel:
    """The same fit for latency per image, in seconds."""
    rows = _ok(frame, engine)
    return pricing.fit_latency(rows["width"], rows["height"], rows["steps"], rows["latency_s"], rows["number_results"])


def spend_by(frame: pd.DataFrame, by: str = "sweep_id") -> pd.DataFrame:
    """Spend, images and cost per image, grouped by ``"sweep_id"``, ``"day"``, ``"engine"`` or any column
    (``"steps"``, ``"size"``, ``"scheduler"``...). Failed requests count with their cost (usually 0)."""
    frame = frame.copy()
    if by == "day":
        frame["day"] = frame["created_utc"].dt.date
    frame["images"] = (frame["status"] == "ok").astype(int)
    frame["failed"] = (frame["status"] == "failed").astype(int)
    grouped = frame.groupby(by, dropna=False).agg(
        spent_usd=("cost_usd", "sum"),
        images=("images", "sum"),
        failed=("failed", "sum"),
        megapixels=("megapixels", "sum"),
    )
    grouped["usd_per_image"] = grouped["spent_usd"] / grouped["images"].where(grouped["images"] > 0)
    grouped["usd_per_megapixel"] = grouped["spent_usd"] / grouped["megapixels"].where(grouped["megapixels"] > 0)
    return grouped.sort_values("spent_usd", ascending=False)


def cost_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Totals: images, spend, cost per image and per megapixel, logged cost vs list price, and the fit per engine."""
    ok = _ok(frame)
    costed = ok[ok["cost_usd"].notna()]
    megapixels = float(costed["megapixels"].sum()) if len(costed) else 0.0
    listed = float(list_price_for(costed).sum()) if len(costed) else 0.0
    spent = float(costed["cost_usd"].sum())
    return {
        "images": len(ok),
        "failed": int((frame["status"] == "failed").sum()),
        "spent_usd": spent,
        "usd_per_image": spent / len(costed) if len(costed) else None,
        "usd_per_megapixel": spent / megapixels if megapixels else None,
        "list_price_usd": listed,
        "spent_vs_list": spent / listed if listed else None,
        "fits": {engine: fit_cost(frame, engine) for engine in sorted(ok["engine"].unique())},
    }


def local_vs_cloud(
    frame: pd.DataFrame, *, gpu_hourly_usd: float | None = None, cloud: LinearModel | None = None
) -> pd.DataFrame:
    """Per local image: its GPU cost (measured seconds x hourly rate; ``gpu_hourly_usd`` re-prices the logged
    seconds) next to what the cloud would charge (the fitted cloud model when given, else the list price)."""
    rows = _ok(frame, "local").copy()
    if gpu_hourly_usd is not None:
        seconds = rows["gpu_seconds"].fillna(rows["latency_s"] / rows["number_results"].clip(lower=1))
        rows["local_usd"] = pricing.gpu_cost_usd(seconds, gpu_hourly_usd)
    else:
        rows["local_usd"] = rows["cost_usd"]
    if cloud is not None and cloud.usable:
        rows["cloud_usd"] = [
            cloud.predict(int(w), int(h), int(s))
            for w, h, s in zip(rows["width"], rows["height"], rows["steps"], strict=True)
        ]
    else:
        rows["cloud_usd"] = list_price_for(rows) if len(rows) else []
    rows["local_over_cloud"] = rows["local_usd"] / rows["cloud_usd"]
    return rows[["id", "demo", "size", "steps", "local_usd", "cloud_usd", "local_over_cloud"]]


def _scatter(frame: pd.DataFrame, x: str, value: str, ylabel: str, title: str, model: LinearModel | None) -> Figure:
    from ._figures import NotebookFigure as Figure  # shows as an image in a notebook, with or without %matplotlib

    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    rows = _ok(frame)
    rows = rows[rows[value].notna()]
    for (engine, size), group in rows.groupby(["engine", "size"]):
        axes.scatter(group[x], group[value], label=f"{engine} {size}", alpha=0.7, s=18)
    if model is not None and model.usable and x == "steps" and len(rows):
        for size in rows["size"].unique():
            width, height = (int(v) for v in str(size).split("x"))
            steps = sorted(rows["steps"].unique())
            axes.plot(steps, [model.predict(width, height, int(s)) for s in steps], linewidth=1, linestyle="--")
    if value == "cost_usd" and x == "steps" and len(rows):
        steps = sorted(rows["steps"].unique())
        for size in rows["size"].unique():
            width, height = (int(v) for v in str(size).split("x"))
            axes.plot(
                steps,
                [spec.list_price_estimate(width, height, int(s)) for s in steps],
                color="grey",
                linewidth=0.8,
                label=f"list price {size}",
            )
    axes.set_xlabel(x)
    axes.set_ylabel(ylabel)
    subtitle = f"\n{model.describe()}" if model is not None and model.usable else ""
    axes.set_title(title + subtitle, fontsize=9, wrap=True)  # wrap: a long model line is not cut at the edge
    if len(rows):
        axes.legend(fontsize=7)
    if "demo" in rows.columns and rows["demo"].any():
        figure.text(0.01, 0.01, "includes demo-weight runs (images are noise)", fontsize=7, color="firebrick")
    return figure


def plot_cost(frame: pd.DataFrame, x: str = "steps", engine: str | None = None) -> Figure:
    """Cost per image against ``x`` (``"steps"`` or ``"megapixels"``), with the fitted model and the list price."""
    model = fit_cost(frame, engine)
    rows = frame if engine is None else frame[frame["engine"] == engine]
    return _scatter(rows, x, "cost_usd", "USD per image", "cost per image", model)


def plot_latency(frame: pd.DataFrame, x: str = "steps", engine: str | None = None) -> Figure:
    """Latency per request against ``x`` (``"steps"`` or ``"megapixels"``), with the fitted model."""
    model = fit_latency(frame, engine)
    rows = frame if engine is None else frame[frame["engine"] == engine]
    return _scatter(rows, x, "latency_s", "seconds", "latency", model)
