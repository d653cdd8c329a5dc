"""The ``imageInference`` request for Kandinsky 5.0 Image Lite: strict, with the model page's exact wire names.

Attribute names *are* the wire names (``positivePrompt``, ``CFGScale``), so what you type, what the panel shows and
what is sent are the same word. Optional fields default to ``None``, which means "not sent: the model's default
applies" (:func:`ImageInferenceRequest.effective` tells what that default is). ``to_wire()`` gives the JSON object
exactly as it goes into the task array.

Invalid input raises :class:`~kandinsky_nb.errors.RequestValidationError` (never pydantic's own error), naming every
bad field with its value and what is allowed.
"""

from __future__ import annotations

import math
import uuid
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    model_validator,
)

from .. import spec
from ..errors import FieldProblem, RequestValidationError
from ._validation import sizes_text, to_request_error
from .images import ImageRef

__all__ = ["AcceleratorOptions", "ImageInferenceRequest", "Lora", "Safety"]


def _limited(key: str, *, description: str = "") -> Any:
    limit = spec.LIMITS[key]
    return Field(default=None, ge=limit.minimum, le=limit.maximum, description=description or None)


def _on_step(key: str) -> AfterValidator:
    step = spec.LIMITS[key].step
    assert step is not None

    def check(value: float | None) -> float | None:
        if value is not None and not spec.on_step(value, step):
            raise ValueError(f"must be a multiple of {step:g}")
        return value

    return AfterValidator(check)


def _uri(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


def _has_text(value: str) -> str:
    # Whitespace only passes the length check but says nothing: the engine would draw an unprompted image, and pay.
    if not value.strip():
        raise ValueError("must contain text, not only whitespace")
    return value


def _uuid_v4(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID v4 such as 'f05d45ad-e63e-44d8-a247-c2dcc3ab0b94'") from None
    if parsed.version != 4 or len(value) != 36:
        raise ValueError("must be a UUID v4 in its 36-character form")
    return value


def size_problems(width: Any, height: Any, explicit: set[str] | frozenset[str]) -> list[FieldProblem]:
    """The size rules: width and height together, and only the 7 supported pairs (naming the nearest one)."""
    if ("width" in explicit) != ("height" in explicit):
        given, other = ("width", "height") if "width" in explicit else ("height", "width")
        return [FieldProblem(other, None, sizes_text(), f"must be given together with {given}")]
    if not (type(width) is int and type(height) is int) or spec.size_for(width, height) is not None:
        return []  # a wrongly typed width/height is reported by its field check
    nearest = spec.nearest_size(width, height)
    on_grid = width % spec.SIZE_STEP == 0 and height % spec.SIZE_STEP == 0
    step_note = "" if on_grid else f"; both must be multiples of {spec.SIZE_STEP}"
    message = f"is not a supported size{step_note}; the nearest is {nearest} ({nearest.label})"
    return [FieldProblem("width/height", f"{width}x{height}", sizes_text(), message)]


def new_task_uuid() -> str:
    return str(uuid.uuid4())


# Set while a request that came from another machine is validated: its paths would name files here. A context
# variable, not pydantic's validation context, because _Strict's own __init__ is what validation runs through, and
# pydantic does not hand its context on to a custom __init__.
_UNTRUSTED: ContextVar[bool] = ContextVar("kandinsky_nb_untrusted_request", default=False)
# Serialisation context key: image inputs as the run log's references instead of their data.
FOR_LOG = "for_log"


def _image_input(value: Any) -> ImageRef:
    return ImageRef.parse(value, local_files=not _UNTRUSTED.get())


def _image_output(ref: ImageRef, info: SerializationInfo) -> str | dict[str, Any]:
    # A logged input has no data to send; it serialises as the reference it came from (the backends refuse to send
    # it, naming the field).
    if (info.context or {}).get(FOR_LOG) or ref.kind == "logged":
        return ref.reference()
    return ref.to_wire()


Image = Annotated[ImageRef, BeforeValidator(_image_input), PlainSerializer(_image_output, return_type=Any)]
URI = Annotated[str | None, AfterValidator(_uri)]


class _Strict(BaseModel):
    """Strict input: unknown fields and wrong types are refused; errors become RequestValidationError."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)
    # The spec key of this object ("lora" for a Lora entry), used to look its limits up.
    _spec_key: ClassVar[str] = ""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise self._refused(exc, data) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, **kwargs)
        except pydantic.ValidationError as exc:
            raise cls._refused(exc, obj) from None

    @classmethod
    def _refused(cls, exc: pydantic.ValidationError, data: Any) -> RequestValidationError:
        error = to_request_error(exc, _FIELDS_OF, cls._spec_key)
        extra = cls._raw_problems(data) if isinstance(data, dict) else []
        known = set(error.fields)
        extra = [p for p in extra if p.field not in known]
        return RequestValidationError([*error.problems, *extra]) if extra else error

    @classmethod
    def _raw_problems(cls, data: dict[str, Any]) -> list[FieldProblem]:
        """Cross-field problems found on the raw input, so that one bad field does not hide them (pydantic runs
        after-validators only when every field passed)."""
        return []

    @classmethod
    def model_validate_json(cls, json_data: str | bytes, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, **kwargs)
        except pydantic.ValidationError as exc:
            raise to_request_error(exc, _FIELDS_OF, cls._spec_key) from None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object as sent: wire names, no unset (None) fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_log(self) -> dict[str, Any]:
        """The JSON object as the run log keeps it: :meth:`to_wire`, except that image inputs holding data are
        references (sha256, byte size, dimensions, format, file name), never their bytes or a data URI."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json", context={FOR_LOG: True})


class Safety(_Strict):
    """``safety``: content checking."""

    _spec_key: ClassVar[str] = "safety"

    checkContent: bool | None = None
    mode: Literal[spec.SAFETY_MODES] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.checkContent is True and self.mode == "none":
            raise RequestValidationError(
                [
                    FieldProblem(
                        "mode",
                        "none",
                        "'fast' (or leave mode unset)",
                        "'none' disables the check that checkContent=true asks for",
                    )
                ]
            )
        return self


CfgStep = _on_step("CFGScale")


class AcceleratorOptions(_Strict):
    """``acceleratorOptions``: the 12 caching knobs. One cache family at a time; the cache window is given either as
    absolute steps or as percentages of ``steps`` (per bound)."""

    _spec_key: ClassVar[str] = "acceleratorOptions"

    cacheEndStep: int | None = _limited("acceleratorOptions.cacheEndStep")
    cacheEndStepPercentage: int | None = _limited("acceleratorOptions.cacheEndStepPercentage")
    cacheMaxConsecutiveSteps: int | None = _limited("acceleratorOptions.cacheMaxConsecutiveSteps")
    cacheStartStep: int | None = _limited("acceleratorOptions.cacheStartStep")
    cacheStartStepPercentage: int | None = _limited("acceleratorOptions.cacheStartStepPercentage")
    fbCache: bool | None = None
    fbCacheThreshold: Annotated[float | None, _on_step("acceleratorOptions.fbCacheThreshold")] = _limited(
        "acceleratorOptions.fbCacheThreshold"
    )
    teaCache: bool | None = None
    teaCacheDistance: Annotated[float | None, _on_step("acceleratorOptions.teaCacheDistance")] = _limited(
        "acceleratorOptions.teaCacheDistance"
    )
    dbCache: bool | None = None
    dbCacheThreshold: Annotated[float | None, _on_step("acceleratorOptions.dbCacheThreshold")] = _limited(
        "acceleratorOptions.dbCacheThreshold"
    )
    dbCacheSkipInterval: int | None = _limited("acceleratorOptions.dbCacheSkipInterval")

    @property
    def enabled_cache(self) -> str | None:
        """The cache family switched on (``"fbCache"``, ``"teaCache"``, ``"dbCache"``) or None."""
        on = [family for family in spec.CACHE_FAMILIES if getattr(self, family)]
        return on[0] if on else None

    def window(self, steps: int) -> tuple[int, int]:
        """The cache window ``[start, end)`` in absolute steps for a run of ``steps`` steps (percentages widen the
        window to whole steps: start rounds down, end rounds up, so ``start% < end%`` never gives an empty window)."""
        if self.cacheStartStep is not None:
            start = self.cacheStartStep
        elif self.cacheStartStepPercentage is not None:
            start = math.floor(steps * self.cacheStartStepPercentage / 100)
        else:
            start = 0
        if self.cacheEndStep is not None:
            end = self.cacheEndStep
        elif self.cacheEndStepPercentage is not None:
            end = math.ceil(steps * self.cacheEndStepPercentage / 100)
        else:
            end = steps
        return start, end

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems: list[FieldProblem] = []
        for bound in ("Start", "End"):
            absolute, percentage = f"cache{bound}Step", f"cache{bound}StepPercentage"
            if getattr(self, absolute) is not None and getattr(self, percentage) is not None:
                problems.append(
                    FieldProblem(
                        percentage,
                        getattr(self, percentage),
                        f"either {absolute} or {percentage}",
                        f"is an alternative to {absolute}; give one of them",
                    )
                )
        if (
            self.cacheStartStep is not None
            and self.cacheEndStep is not None
            and self.cacheStartStep >= self.cacheEndStep
        ):
            problems.append(
                FieldProblem(
                    "cacheEndStep",
                    self.cacheEndStep,
                    f"greater than cacheStartStep={self.cacheStartStep}",
                    "must be greater than cacheStartStep",
                )
            )
        start_pct, end_pct = self.cacheStartStepPercentage, self.cacheEndStepPercentage
        if start_pct is not None and end_pct is not None and start_pct >= end_pct:
            problems.append(
                FieldProblem(
                    "cacheEndStepPercentage",
                    end_pct,
                    f"greater than cacheStartStepPercentage={start_pct}",
                    "must be greater than cacheStartStepPercentage",
                )
            )
        enabled = [family for family in spec.CACHE_FAMILIES if getattr(self, family)]
        if len(enabled) > 1:
            problems.append(
                FieldProblem(
                    enabled[1],
                    True,
                    "one of fbCache, teaCache, dbCache",
                    f"cannot be combined with {enabled[0]}; enable one cache at a time",
                )
            )
        for family, knobs in spec.CACHE_FAMILIES.items():
            for knob in knobs:
                if getattr(self, knob) is not None and not getattr(self, family):
                    problems.append(
                        FieldProblem(
                            knob,
                            getattr(self, knob),
                            f"only with {family}=true",
                            f"has no effect unless {family} is true",
                        )
                    )
        window = (
            "cacheStartStep",
            "cacheStartStepPercentage",
            "cacheEndStep",
            "cacheEndStepPercentage",
            "cacheMaxConsecutiveSteps",
        )
        if not enabled:
            for knob in window:
                if getattr(self, knob) is not None:
                    problems.append(
                        FieldProblem(
                            knob,
                            getattr(self, knob),
                            "only with fbCache, teaCache or dbCache enabled",
                            "has no effect unless a cache is enabled",
                        )
                    )
        if problems:
            raise RequestValidationError(problems)
        return self


class Lora(_Strict):
    """One entry of ``lora``: a LoRA model and how strongly to apply it."""

    _spec_key: ClassVar[str] = "lora"

    model: Annotated[str, Field(min_length=1)]
    weight: Annotated[float | None, _on_step("lora.weight")] = _limited("lora.weight")
    transformer: Literal[spec.LORA_TRANSFORMERS] | None = None  # type: ignore[valid-type]


class ImageInferenceRequest(_Strict):
    """One ``imageInference`` task for ``runware:kandinsky-5.0-image-lite@1``.

    >>> r = ImageInferenceRequest(positivePrompt="a red fox in snow", width=1280, height=768, steps=28, CFGScale=7.5)
    >>> r.to_wire()["CFGScale"]
    7.5
    """

    # API options
    taskType: Literal[spec.TASK_TYPE] = spec.TASK_TYPE  # type: ignore[valid-type]
    taskUUID: Annotated[str, AfterValidator(_uuid_v4)] = Field(default_factory=new_task_uuid)
    outputType: Literal[spec.OUTPUT_TYPES] | None = None  # type: ignore[valid-type]
    outputFormat: Literal[spec.OUTPUT_FORMATS] | None = None  # type: ignore[valid-type]
    outputQuality: int | None = _limited("outputQuality")
    webhookURL: URI = None
    deliveryMethod: Literal[spec.DELIVERY_METHODS] | None = None  # type: ignore[valid-type]
    uploadEndpoint: URI = None
    safety: Safety | None = None
    ttl: int | None = _limited("ttl")
    includeCost: bool | None = None
    numberResults: int | None = _limited("numberResults")
    acceleratorOptions: AcceleratorOptions | None = None
    # Generation parameters
    model: Literal[spec.MODEL_ID] = spec.MODEL_ID  # type: ignore[valid-type]
    positivePrompt: Annotated[
        str,
        Field(min_length=spec.TEXT_LIMITS["positivePrompt"][0], max_length=spec.TEXT_LIMITS["positivePrompt"][1]),
        AfterValidator(_has_text),
    ]
    negativePrompt: Annotated[
        str | None,
        Field(min_length=spec.TEXT_LIMITS["negativePrompt"][0], max_length=spec.TEXT_LIMITS["negativePrompt"][1]),
    ] = None
    # Required on the wire; the toolkit fills the default size so a bare prompt is a complete request.
    width: int = spec.DEFAULT_SIZE.width
    height: int = spec.DEFAULT_SIZE.height
    seed: int | None = _limited("seed")
    steps: int | None = _limited("steps")
    scheduler: Literal[spec.SCHEDULERS] | None = None  # type: ignore[valid-type]
    CFGScale: Annotated[float | None, CfgStep] = _limited("CFGScale")
    lora: list[Lora] | None = None
    # Image inputs. NOT in the model page's parameter table: the page lists image-to-image and editing as
    # capabilities but documents no field for them. These use Runware's generic image-API names; the local engine
    # honours them, and the Runware engine sends them only when asked to (the cloud may refuse them).
    seedImage: Image | None = None
    strength: Annotated[float | None, _on_step("strength")] = _limited("strength")
    referenceImages: list[Image] | None = None

    IMAGE_INPUT_FIELDS: ClassVar[tuple[str, ...]] = spec.IMAGE_INPUT_PARAMETERS

    @classmethod
    def from_untrusted(cls, data: Any) -> ImageInferenceRequest:
        """Validate a request that came from another machine (a server's POST body): the same rules, except that an
        image input may not name a local file (on a server, that file is the server's)."""
        token = _UNTRUSTED.set(True)
        try:
            return cls.model_validate(data)
        finally:
            _UNTRUSTED.reset(token)

    @property
    def logged_inputs(self) -> list[tuple[str, ImageRef]]:
        """Image inputs rebuilt from the run log by reference (no pixels), by field: such a request cannot be sent
        again until they are given back."""
        found = [("seedImage", self.seedImage)] if self.seedImage is not None else []
        found += [(f"referenceImages[{i}]", ref) for i, ref in enumerate(self.referenceImages or [])]
        return [(name, ref) for name, ref in found if ref is not None and ref.kind == "logged"]

    @classmethod
    def _raw_problems(cls, data: dict[str, Any]) -> list[FieldProblem]:
        default = spec.DEFAULT_SIZE
        return size_problems(data.get("width", default.width), data.get("height", default.height), set(data))

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        problems: list[FieldProblem] = []
        problems.extend(size_problems(self.width, self.height, self.model_fields_set))
        if self.ttl is not None and self.outputType not in (None, "URL"):
            problems.append(
                FieldProblem(
                    "ttl",
                    self.ttl,
                    "only with outputType='URL'",
                    f"applies only to URL output, not {self.outputType!r}",
                )
            )
        if self.strength is not None and self.seedImage is None:
            problems.append(
                FieldProblem(
                    "strength", self.strength, "only together with seedImage", "has no effect without seedImage"
                )
            )
        options = self.acceleratorOptions
        if options is not None and options.enabled_cache:
            steps = self.effective("steps")
            start, end = options.window(steps)
            if options.cacheEndStep is not None and options.cacheEndStep > steps:
                problems.append(
                    FieldProblem(
                        "acceleratorOptions.cacheEndStep",
                        options.cacheEndStep,
                        f"at most steps={steps}",
                        "must be less than or equal to steps",
                    )
                )
            elif start >= end:
                problems.append(
                    FieldProblem(
                        "acceleratorOptions.cacheStartStep",
                        start,
                        f"less than the cache end step ({end} of {steps})",
                        "the cache window is empty",
                    )
                )
        if problems:
            raise RequestValidationError(problems)
        return self

    # -- conveniences ------------------------------------------------------------------------------------------
    @property
    def size(self) -> spec.Size:
        size = spec.size_for(self.width, self.height)
        assert size is not None  # guaranteed by validation
        return size

    @property
    def has_image_inputs(self) -> bool:
        return self.seedImage is not None or bool(self.referenceImages)

    def effective(self, name: str) -> Any:
        """A field's value, or the model page's default when it is not set (``effective("steps") == 20``)."""
        value = getattr(self, name)
        return spec.DEFAULTS.get(name) if value is None else value

    def replace(self, **changes: Any) -> ImageInferenceRequest:
        """A validated copy with some fields changed. It is a new task: it gets a fresh taskUUID unless one is given.
        ``None`` removes a field; nested fields may be given as dicts."""
        data = self.model_dump(exclude_none=True, exclude={"taskUUID"} if "taskUUID" not in changes else set())
        for key in ("seedImage", "referenceImages"):
            if key in data:
                data[key] = getattr(self, key)  # keep the classified ImageRef, not its wire string
        data.update(changes)
        data = {k: v for k, v in data.items() if v is not None}
        explicit = {"width", "height"} & (self.model_fields_set | set(changes))
        if len(explicit) == 1:  # replacing one side of a size keeps the other explicitly
            data.setdefault("width", self.width)
            data.setdefault("height", self.height)
        return type(self).model_validate(data)


_FIELDS_OF: dict[str, tuple[str, ...]] = {
    "": tuple(ImageInferenceRequest.model_fields),
    "safety": tuple(Safety.model_fields),
    "acceleratorOptions": tuple(AcceleratorOptions.model_fields),
    "lora": tuple(Lora.model_fields),
}
