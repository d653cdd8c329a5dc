"""A sweep's design, computed without I/O: base request, axes, cells, name and the definition a resume compares.

:func:`design_sweep` expands the axes (lists or A1111 range strings), builds and validates every cell's request and
names each cell by its coordinates. The Session wraps the design in a :class:`~kandinsky_nb.session.SweepPlan`, which
adds the engine's own checks, the run log and running.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import SweepError
from ..types import ImageInferenceRequest
from .axes import Axis, parse_axes, resolve_axis
from .cells import MAX_CELLS, SweepCell, build_request, check_plan_size, expand_cells

__all__ = ["MAX_NAME_LENGTH", "SweepDesign", "check_same_sweep", "check_sweep_name", "design_sweep"]

# A sweep's name is a key in the run log, a label in grids and panels, and part of file names: a line of text.
MAX_NAME_LENGTH = 200


def check_sweep_name(name: Any) -> str:
    """Refuse a name that is not one short line of printable text (it is shown, stored and used in file names)."""
    if not isinstance(name, str) or not name.strip():
        raise SweepError(f"name={name!r} is not a sweep name; give a short name such as 'fox-cfg'")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
        raise SweepError(
            f"name={shown} is not allowed: a sweep name is one line of printable text of at most {MAX_NAME_LENGTH} "
            "characters; give a short name such as 'fox-cfg'"
        )
    return name


@dataclass(frozen=True)
class SweepDesign:
    """A sweep's name, base request, axes, cells, and the definition stored with it in the run log."""

    name: str
    base: ImageInferenceRequest
    axes: list[Axis]
    cells: list[SweepCell]
    definition: dict[str, Any]


def _canonical(request: ImageInferenceRequest) -> dict[str, Any]:
    wire = request.to_wire()
    wire.pop("taskUUID", None)
    return wire


def _name_seed(name: str) -> int:
    """A seed derived from the sweep's name, so every cell shares one seed and a resume gets the same one."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def check_same_sweep(name: str, earlier: dict[str, Any] | None, definition: dict[str, Any]) -> None:
    """Refuse to resume a sweep under a name already used by a different experiment (values may be added)."""
    if earlier is None:
        return
    if earlier.get("base") != definition["base"] or sorted(earlier.get("axes", {})) != sorted(definition["axes"]):
        raise SweepError(
            f"a sweep named {name!r} is already in the run log with a different base request or axes; resuming it "
            "would mix two experiments. Use another name=, or the same prompt, fields and axis names as before "
            "(adding values to an axis is fine)."
        )


def design_sweep(
    prompt: str | list[str] | tuple[str, ...] | None,
    *,
    name: str | None = None,
    request: ImageInferenceRequest | None = None,
    axes: dict[str, Any],
    max_cells: int = MAX_CELLS,
) -> SweepDesign:
    """Expand and validate a sweep (nothing is sent). A list of prompts is a prompt axis; scalars fix a field. More
    than ``max_cells`` cells are refused before any is built."""
    if isinstance(prompt, list | tuple):
        if any(resolve_axis(key) == "positivePrompt" for key in axes):
            raise SweepError("prompts are given twice (a list and a positivePrompt axis); give them once")
        axes = {"positivePrompt": list(prompt), **axes}
        prompt = None
    if name is not None:
        check_sweep_name(name)
    parsed, fixed = parse_axes(axes)
    check_plan_size(parsed, max_cells)
    prompt_axis = next((a for a in parsed if a.name == "positivePrompt"), None)
    if prompt is None and request is None and prompt_axis is None:
        raise SweepError("a sweep needs a prompt: sweep('a red fox', ...), request=..., or a positivePrompt axis")
    base_prompt = prompt
    if base_prompt is None and request is None and prompt_axis is not None:
        base_prompt = prompt_axis.values[0]  # the base must be valid on its own; every cell replaces the prompt
    base = build_request(base_prompt, request=request, **fixed)
    definition: dict[str, Any] = {
        "base": _canonical(base),
        "axes": {axis.name: list(axis.values) for axis in parsed},
    }
    if name is None:
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:10]
        name = f"sweep-{digest}"
    if base.seed is None and not any(a.name == "seed" for a in parsed):
        # One seed for every cell (A1111's "fixed seed"), derived from the name so a resume reproduces it.
        base = base.replace(seed=_name_seed(name), taskUUID=base.taskUUID)
        definition["seed_from_name"] = base.seed
    return SweepDesign(name, base, parsed, expand_cells(base, parsed, max_cells), definition)
