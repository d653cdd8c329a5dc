"""Turn pydantic's validation errors into the toolkit's ``RequestValidationError``.

Every problem names the field by its wire path, quotes the value given, and says what is allowed, reading the
allowed ranges from :mod:`kandinsky_nb.spec` so that the message and the check can never disagree.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import pydantic

from .. import spec
from ..errors import FieldProblem, RequestValidationError


def wire_path(loc: Iterable[int | str]) -> str:
    """``("lora", 0, "weight")`` -> ``"lora[0].weight"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def limit_key(path: str) -> str:
    """``"lora[0].weight"`` -> ``"lora.weight"``: the key under which spec stores the field's limits."""
    return re.sub(r"\[\d+\]", "", path)


def _allowed_for(path: str) -> str:
    """What the spec allows for a field, in words ("" when the spec has nothing to say)."""
    key = limit_key(path)
    if key in spec.LIMITS:
        return spec.LIMITS[key].describe()
    if key in spec.TEXT_LIMITS:
        low, high = spec.TEXT_LIMITS[key]
        return f"text of {low} to {high} characters"
    choices = {
        "scheduler": spec.SCHEDULERS,
        "outputType": spec.OUTPUT_TYPES,
        "outputFormat": spec.OUTPUT_FORMATS,
        "deliveryMethod": spec.DELIVERY_METHODS,
        "safety.mode": spec.SAFETY_MODES,
        "lora.transformer": spec.LORA_TRANSFORMERS,
        "taskType": (spec.TASK_TYPE,),
        "model": (spec.MODEL_ID,),
    }.get(key)
    if choices:
        return "one of " + ", ".join(repr(c) for c in choices)
    if key in ("width", "height"):
        return sizes_text()
    return ""


def sizes_text() -> str:
    return "one of the 7 sizes " + ", ".join(f"{s} ({s.label})" for s in spec.SIZES)


_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "model_type": "an object",
    "dict_type": "an object",
}


def problem_from_pydantic(error: Any, fields_of: dict[str, tuple[str, ...]], base: str = "") -> list[FieldProblem]:
    """One pydantic error dict -> the problems it stands for.

    ``base`` is the spec key of the model that failed (``"lora"`` for a ``Lora``): fields are named relative to that
    model, while allowed ranges are looked up under their full key.
    """
    loc = tuple(error.get("loc", ()))
    path = wire_path(loc)

    def allowed_for(relative: str) -> str:
        return _allowed_for(f"{base}.{relative}" if base else relative)

    kind = error.get("type", "")
    value = error.get("input")
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, RequestValidationError):
        # Raised by one of our own cross-field checks: its paths are relative to where pydantic found it.
        prefix = path + "." if path else ""
        return [FieldProblem(prefix + p.field, p.value, p.allowed, p.message) for p in cause.problems]
    if kind == "missing":
        return [FieldProblem(path, None, allowed_for(path), "is required")]
    if kind == "extra_forbidden":
        parent = limit_key(".".join(p for p in (base, wire_path(loc[:-1])) if p))
        known = fields_of.get(parent, ())
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = (
            f"is not a parameter of this model (did you mean {guess[0]!r}?)"
            if guess
            else "is not a parameter of this model"
        )
        return [FieldProblem(path, value, "one of " + ", ".join(known), hint)]
    if kind in _TYPE_WORDS:
        return [FieldProblem(path, value, allowed_for(path) or _TYPE_WORDS[kind], f"must be {_TYPE_WORDS[kind]}")]
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    message = message[0].lower() + message[1:] if message else "invalid"
    return [FieldProblem(path, value, allowed_for(path), message)]


def to_request_error(
    exc: pydantic.ValidationError, fields_of: dict[str, tuple[str, ...]], base: str = ""
) -> RequestValidationError:
    problems: list[FieldProblem] = []
    for error in exc.errors(include_url=False):
        problems.extend(problem_from_pydantic(error, fields_of, base))
    return RequestValidationError(problems)
