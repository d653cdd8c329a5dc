"""What a run costs before it runs: the list price, or a linear model fitted to the costs already logged.

Runware bills hosted open models by compute time, which grows with pixels and steps, so the model is
``cost = rate * megapixel_steps + base`` per image, fitted by least squares. The fit says how good it is (R², MAPE)
and is used only when it has enough points; otherwise the list price (:func:`kandinsky_nb.spec.list_price_estimate`)
stands. The same form fits latency, for time estimates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import spec
from ..types import ImageInferenceRequest

__all__ = ["LinearModel", "fit_linear", "list_price", "megapixel_steps"]

# Fewer logged points than this and the fit is not trusted for estimates.
MIN_POINTS = 3


def megapixel_steps(width: float, height: float, steps: float) -> float:
    return width * height / 1_000_000 * steps


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
    x: Sequence[float] | Iterable[float],
    y: Sequence[float] | Iterable[float],
    *,
    intercept: bool = True,
    what: str = "cost_usd",
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
