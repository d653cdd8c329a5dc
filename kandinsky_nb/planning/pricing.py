"""What a run costs and takes before it runs: the list price, and THE one cost/latency model.

Runware bills hosted open models by compute time, which grows with pixels and steps, so the model is
``value = rate * megapixel_steps + base`` per image, fitted by least squares to the runs already logged; the same form
fits latency, for time estimates. A fit says how good it is (R², MAPE) and is used only when it has enough points;
otherwise the list price (:func:`kandinsky_nb.spec.list_price_estimate`) stands and the time is unknown.

Everything that prices a request calls this module: the Session (:meth:`Session.cost_model`), the analysis
(``fit_cost``/``fit_latency`` over a DataFrame) and the panels (:func:`estimate`), so an estimate shown in a panel is
the figure the budget reserves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import spec
from ..types import ImageInferenceRequest
from .estimates import Estimate

__all__ = [
    "LIST_PRICE",
    "CostModel",
    "LinearModel",
    "estimate",
    "fit_cost",
    "fit_latency",
    "fit_linear",
    "gpu_cost_usd",
    "list_price",
    "megapixel_steps",
    "work_units",
]

# Fewer logged points than this and a fit is not trusted for estimates.
MIN_POINTS = 3
# Where an estimate comes from when no fit is usable.
LIST_PRICE = "list price"


def megapixel_steps(width: Any, height: Any, steps: Any) -> Any:
    """Megapixels x steps: what one image's compute time (and so its price) scales with. Scalars or arrays."""
    return width * height / 1_000_000 * steps


def work_units(request: ImageInferenceRequest) -> float:
    """Megapixel-steps x images of a request: what its time and price scale with."""
    steps = request.effective("steps")
    return float(megapixel_steps(request.width, request.height, steps)) * request.effective("numberResults")


def gpu_cost_usd(seconds: Any, hourly_usd: float) -> Any:
    """What GPU time costs: measured seconds times an hourly rate (a number, or elementwise for a pandas Series).
    The local engine prices its runs with it and the analysis re-prices logged runs with it, so they agree."""
    return seconds * hourly_usd / 3600


def list_price(request: ImageInferenceRequest) -> float:
    """The list price of a request in USD, scaled by megapixels, steps and numberResults."""
    return spec.list_price_estimate(
        request.width, request.height, request.effective("steps"), request.effective("numberResults")
    )


@dataclass(frozen=True)
class LinearModel:
    """``value = rate * megapixel_steps + base`` per image, with its fit quality on the points it was fitted to."""

    rate: float
    base: float
    r2: float
    mape: float
    points: int
    what: str = "cost_usd"

    def predict(self, width: int, height: int, steps: int, number_results: int = 1) -> float:
        return max(self.rate * megapixel_steps(width, height, steps) + self.base, 0.0) * number_results

    def predict_request(self, request: ImageInferenceRequest) -> float:
        return self.predict(
            request.width, request.height, request.effective("steps"), request.effective("numberResults")
        )

    @property
    def usable(self) -> bool:
        return self.points >= MIN_POINTS and math.isfinite(self.rate)

    def describe(self) -> str:
        return (
            f"{self.what} = {self.rate:.4g} x megapixel-steps + {self.base:.3g} "
            f"(fitted to {self.points} runs; R² {self.r2:.3f}, MAPE {self.mape:.1%})"
        )

    def __str__(self) -> str:
        return self.describe()


def fit_linear(
    x: Iterable[float], y: Iterable[float], *, intercept: bool = True, what: str = "cost_usd"
) -> LinearModel:
    """Least squares of ``y`` on ``x`` (megapixel-steps), with R² and the mean absolute percentage error."""
    import numpy as np

    xs, ys = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    if len(xs) == 0:
        return LinearModel(float("nan"), 0.0, float("nan"), float("nan"), 0, what)
    design = np.column_stack([xs, np.ones_like(xs)]) if intercept and len(set(xs.tolist())) > 1 else xs[:, None]
    coefficients, *_ = np.linalg.lstsq(design, ys, rcond=None)
    rate = float(coefficients[0])
    base = float(coefficients[1]) if design.shape[1] == 2 else 0.0
    predicted = rate * xs + base
    residual = float(np.sum((ys - predicted) ** 2))
    total = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual < 1e-24 else 0.0)
    nonzero = ys != 0
    mape = float(np.mean(np.abs((ys[nonzero] - predicted[nonzero]) / ys[nonzero]))) if nonzero.any() else float("nan")
    return LinearModel(rate, base, r2, mape, len(xs), what)


def _floats(values: Iterable[Any]) -> Any:
    import numpy as np

    return np.asarray(list(values), dtype=float)


def fit_cost(
    width: Iterable[float],
    height: Iterable[float],
    steps: Iterable[float],
    cost_usd: Iterable[float | None],
    *,
    intercept: bool = True,
) -> LinearModel:
    """The cost model from logged images: cost per image (the run log's ``cost_usd``, one row per image) on
    megapixel-steps. Columns of equal length; missing costs (None/NaN) are left out."""
    x = megapixel_steps(_floats(width), _floats(height), _floats(steps))
    return fit_linear(x, _floats(cost_usd), intercept=intercept)


def fit_latency(
    width: Iterable[float],
    height: Iterable[float],
    steps: Iterable[float],
    latency_s: Iterable[float | None],
    number_results: Iterable[float],
) -> LinearModel:
    """The latency model: seconds per image (a request's latency shared by its images) on megapixel-steps."""
    import numpy as np

    x = megapixel_steps(_floats(width), _floats(height), _floats(steps))
    per_image = _floats(latency_s) / np.maximum(_floats(number_results), 1.0)
    return fit_linear(x, per_image, what="latency_s")


@dataclass(frozen=True)
class CostModel:
    """THE estimate of a request's cost and time: the cost fit when usable, else the list price; the latency fit
    when usable, else no time. ``CostModel()`` is the list price alone (nothing logged yet)."""

    cost: LinearModel | None = None
    latency: LinearModel | None = None
    #: which runs the fits came from, for the estimate's source ("runware", "local")
    fitted_to: str = "logged"

    #: the run-log columns :meth:`fit` reads
    COLUMNS: ClassVar[tuple[str, ...]] = ("width", "height", "steps", "number_results", "cost_usd", "latency_s")

    @classmethod
    def fit(cls, rows: Iterable[Mapping[str, Any]], fitted_to: str = "logged") -> CostModel:
        """Fit both models to ok rows of the run log (``width``, ``height``, ``steps``, ``number_results``,
        ``cost_usd``, ``latency_s``); a fit with too few points is dropped, so its estimate falls back."""
        rows = list(rows)
        columns = {name: [row[name] for row in rows] for name in ("width", "height", "steps", "number_results")}
        costs = [row["cost_usd"] if row["cost_usd"] is not None else math.nan for row in rows]
        latencies = [row["latency_s"] if row["latency_s"] is not None else math.nan for row in rows]
        cost = fit_cost(columns["width"], columns["height"], columns["steps"], costs)
        latency = fit_latency(
            columns["width"], columns["height"], columns["steps"], latencies, columns["number_results"]
        )
        return cls(cost if cost.usable else None, latency if latency.usable else None, fitted_to)

    def price(self, request: ImageInferenceRequest) -> tuple[float, str]:
        """Estimated USD for one request and where the figure comes from."""
        if self.cost is not None and self.cost.usable:
            return self.cost.predict_request(request), f"fitted to {self.cost.points} logged {self.fitted_to} runs"
        return list_price(request), LIST_PRICE

    def seconds(self, request: ImageInferenceRequest) -> float | None:
        """Estimated seconds for one request, or None when no latency fit is usable."""
        return self.latency.predict_request(request) if self.latency is not None and self.latency.usable else None

    def estimate(self, request: ImageInferenceRequest) -> Estimate:
        cost, source = self.price(request)
        return Estimate(request.effective("numberResults"), cost, source, self.seconds(request))


def estimate(request: ImageInferenceRequest, model: CostModel | None = None) -> Estimate:
    """Images, cost (and its source) and seconds of one request: ``model`` (a session's ``cost_model()``) or, with
    none, the list price. What a panel shows is what the budget will reserve."""
    return (model or CostModel()).estimate(request)
