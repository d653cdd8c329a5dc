"""The axes a sweep may vary: their names and aliases, their value kinds, and how keyword arguments become axes.

One table (:data:`AXES`) serves the sweep planner, the grid drawer and the panels, so an alias such as ``cfg`` means
``CFGScale`` everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import spec
from ..errors import SweepError
from ..types import AcceleratorOptions, ImageInferenceRequest
from .ranges import AxisKind, parse_axis_values

__all__ = ["AXES", "Axis", "grid_layout", "parse_axes", "resolve_axis"]


def _axis_table() -> dict[str, tuple[AxisKind, tuple[str, ...]]]:
    table: dict[str, tuple[AxisKind, tuple[str, ...]]] = {
        "steps": ("int", ()),
        "CFGScale": ("float", ("cfg", "cfg_scale", "guidance")),
        "scheduler": ("choice", ("sampler",)),
        "seed": ("int", ()),
        "positivePrompt": ("text", ("prompt",)),
        "negativePrompt": ("text", ("negative_prompt", "negative")),
        "size": ("choice", ()),
        "lora.weight": ("float", ("lora_weight",)),
        "numberResults": ("int", ()),
        "outputFormat": ("choice", ()),
        "strength": ("float", ()),
    }
    # Every accelerator option is an axis under its own name too (teaCache=True, teaCacheDistance="0.1-0.3 (+0.1)").
    for name, info in AcceleratorOptions.model_fields.items():
        kind: AxisKind = (
            "bool" if info.annotation == (bool | None) else "float" if "float" in str(info.annotation) else "int"
        )
        table[f"acceleratorOptions.{name}"] = (kind, (name,))
    return table


#: canonical axis name -> (value kind, aliases)
AXES: dict[str, tuple[AxisKind, tuple[str, ...]]] = _axis_table()
_LOOKUP = {alias.lower(): name for name, (_, aliases) in AXES.items() for alias in (name, *aliases)}


def resolve_axis(name: str) -> str | None:
    """The canonical axis name for ``name`` or one of its aliases (case-insensitive), or None."""
    return _LOOKUP.get(name.lower())


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...]
    kind: AxisKind

    def __len__(self) -> int:
        return len(self.values)


def _size_value(value: Any, axis: str) -> str:
    if isinstance(value, spec.Size):
        return str(value)
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    try:
        return str(spec.size_by_label(str(value).strip()))
    except KeyError as exc:
        raise SweepError(f"axis {axis!r}: {exc.args[0]}") from None


def parse_axes(raw: dict[str, Any]) -> tuple[list[Axis], dict[str, Any]]:
    """Split keyword arguments into axes (values expanded) and fixed request fields; anything else is refused,
    naming it and the axes there are."""
    axes: list[Axis] = []
    fixed: dict[str, Any] = {}
    for key, values in raw.items():
        canonical = resolve_axis(key)
        if canonical is None:
            if key in ImageInferenceRequest.model_fields and key != "taskUUID":
                fixed[key] = values
                continue
            known = ", ".join(sorted(AXES))
            raise SweepError(f"{key!r} is not a sweep axis or request field; axes are: {known}")
        if any(axis.name == canonical for axis in axes):
            raise SweepError(f"axis {canonical!r} is given twice (as {key!r} and an alias); give it once")
        kind = AXES[canonical][0]
        parsed = parse_axis_values(canonical, values, kind)
        if canonical == "size":
            parsed = list(dict.fromkeys(_size_value(v, canonical) for v in parsed))
        axes.append(Axis(canonical, tuple(parsed), kind))
    return axes, fixed


def grid_layout(
    varied: Sequence[str], x: str | None = None, y: str | None = None, z: str | Sequence[str] | None = None
) -> tuple[str | None, str | None, list[str]]:
    """Which axes a sweep's grid puts across, down and in blocks: the ones asked for (aliases resolved), else the
    first varied axis across, the second down, and one block per value of the rest."""
    chosen = [resolve_axis(a) or a for a in (x, y) if a]
    rest = [a for a in varied if a not in chosen]
    x = (resolve_axis(x) or x) if x else (rest.pop(0) if rest else None)
    y = (resolve_axis(y) or y) if y else (rest.pop(0) if rest else None)
    if isinstance(z, str):
        return x, y, [z]
    return x, y, [a for a in rest if a not in (x, y)] if z is None else list(z)
