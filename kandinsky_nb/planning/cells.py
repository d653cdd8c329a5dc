"""Requests and sweep cells: a base request times axes -> cells, each a full valid request with a stable identity."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from .. import spec
from ..errors import ConfigurationError, RequestValidationError, SweepError
from ..types import ImageInferenceRequest
from .axes import Axis

__all__ = [
    "MAX_CELLS",
    "CellJob",
    "CellRef",
    "SweepCell",
    "build_request",
    "cell_key",
    "check_count",
    "check_plan_size",
    "expand_cells",
]

# The most cells one plan may have unless its caller raises the limit: 10,000 images is already a day of a GPU or a
# large bill, and a product of axes that passes it is almost always a typo (an extra digit in a range).
MAX_CELLS = 10_000


def build_request(
    prompt: str | None = None, *, request: ImageInferenceRequest | None = None, **fields: Any
) -> ImageInferenceRequest:
    """A validated request from a prompt and wire fields, or from ``request`` with fields replaced."""
    if prompt is not None:
        fields["positivePrompt"] = prompt
    if request is not None:
        return request.replace(**fields) if fields else request
    return ImageInferenceRequest(**fields)


def cell_key(coords: dict[str, Any]) -> str:
    """A cell's identity within its sweep: canonical JSON of its coordinates (axis order does not matter)."""
    return json.dumps(coords, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SweepCell:
    """One cell: its position, its coordinates (axis -> value) and its full, validated request."""

    index: int
    coords: dict[str, Any]
    request: ImageInferenceRequest

    @property
    def key(self) -> str:
        return cell_key(self.coords)


@dataclass(frozen=True)
class CellRef:
    """Which sweep cell a run belongs to: what the run log records with it, so a re-run finds it."""

    sweep_id: str
    cell_key: str


@dataclass(frozen=True)
class CellJob:
    """One cell to run now: the request to send (a fresh taskUUID per attempt) or, when ``pending``, the request sent
    before without an answer in the log (looked up by its taskUUID first, never blindly sent again)."""

    cell: SweepCell
    request: ImageInferenceRequest
    ref: CellRef
    pending: bool = False


def _changes(base: ImageInferenceRequest, coords: dict[str, Any]) -> dict[str, Any]:
    """The request fields one cell sets, from its coordinates."""
    changes: dict[str, Any] = {}
    accelerator: dict[str, Any] = {}
    for axis, value in coords.items():
        if axis == "size":
            size = spec.size_by_label(value)
            changes["width"], changes["height"] = size.width, size.height
        elif axis == "lora.weight":
            if not base.lora:
                raise SweepError("the 'lora.weight' axis needs a base request with lora=[{'model': ...}]; add one")
            changes["lora"] = [{**entry.model_dump(exclude_none=True), "weight": value} for entry in base.lora]
        elif axis.startswith("acceleratorOptions."):
            accelerator[axis.split(".", 1)[1]] = value
        else:
            changes[axis] = value
    if accelerator:
        existing = base.acceleratorOptions.model_dump(exclude_none=True) if base.acceleratorOptions else {}
        changes["acceleratorOptions"] = {**existing, **accelerator}
    return changes


def check_count(name: str, value: Any) -> int:
    """``value`` if it is a whole number of at least 1 (a count of cells, workers, requests per batch); else
    ConfigurationError naming ``name`` (a float, NaN or bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name}={value!r} is not allowed: give a whole number of at least 1")
    return value


def check_plan_size(axes: list[Axis], max_cells: int = MAX_CELLS) -> int:
    """The number of cells the axes make; refuses more than ``max_cells`` before a single cell is built, naming each
    axis and its count."""
    check_count("max_cells", max_cells)
    count = math.prod(len(axis) for axis in axes)
    if count > max_cells:
        shape = " x ".join(f"{axis.name}[{len(axis)}]" for axis in axes)
        raise SweepError(
            f"this sweep has {count:,} cells ({shape}), more than the limit of {max_cells:,} per plan; use fewer "
            "values on an axis, split it into several sweeps, or raise the limit with max_cells= (--max-cells)"
        )
    return count


def expand_cells(base: ImageInferenceRequest, axes: list[Axis], max_cells: int = MAX_CELLS) -> list[SweepCell]:
    """Every combination of the axes' values (the first axis outermost), each validated as a full request. At most
    ``max_cells`` cells (:func:`check_plan_size`)."""
    check_plan_size(axes, max_cells)
    cells = []
    for index, combination in enumerate(itertools.product(*(axis.values for axis in axes))):
        coords = {axis.name: value for axis, value in zip(axes, combination, strict=True)}
        try:
            request = base.replace(**_changes(base, coords))
        except RequestValidationError as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in coords.items())
            raise RequestValidationError(
                exc.problems,
                hint=f"Sweep cell ({where}) is not a valid request; change or remove the axis value named above.",
            ) from None
        cells.append(SweepCell(index, coords, request))
    return cells
