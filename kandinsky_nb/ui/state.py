"""The panels' state as plain Python, and the pure decisions made on it.

A panel is a thin view: every value a user can set lives in a dataclass here, and every decision (which JSON is sent,
which problem belongs next to which control, the Python code that reproduces it) is a plain
function of that state. Tests set and read these objects; the widgets only mirror them.

Control keys are the request's wire paths (``"steps"``, ``"safety.mode"``, ``"acceleratorOptions.cacheEndStep"``),
so a :class:`~kandinsky_nb.errors.FieldProblem` finds its control by its ``field`` alone.
"""

from __future__ import annotations

import pprint
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .. import spec
from ..errors import FieldProblem, RequestValidationError
from ..types import ImageInferenceRequest

__all__ = [
    "CACHE_WINDOW_KNOBS",
    "GENERAL",
    "GenerateState",
    "LoraEntry",
    "RunState",
    "build_request",
    "code_for_request",
    "control_for_problem",
    "problems_by_control",
    "state_from_request",
    "validate_state",
]

# Where problems that belong to no single control are shown (next to the Generate button).
GENERAL = "general"

# The cache window is shared by the three cache families; their own tuning knobs come from spec.CACHE_FAMILIES.
CACHE_WINDOW_KNOBS: tuple[str, ...] = (
    "cacheStartStep",
    "cacheEndStep",
    "cacheStartStepPercentage",
    "cacheEndStepPercentage",
    "cacheMaxConsecutiveSteps",
)

# API options sent only when they differ from the model page's default, so the JSON stays short and readable.
_API_OPTIONS_SENT_WHEN_CHANGED = ("outputType", "outputFormat", "outputQuality", "deliveryMethod")


def _default(key: str) -> Any:
    return spec.LIMITS[key].default


@dataclass
class LoraEntry:
    """One row of the LoRA list."""

    model: str = ""
    weight: float = float(_default("lora.weight"))
    transformer: str = str(spec.DEFAULTS["lora.transformer"])


@dataclass
class GenerateState:
    """Everything the GeneratePanel form holds. Field names are the wire names where one exists.

    Free-text numbers (seed, ttl, the cache knobs) are kept as text, as typed: a seed can exceed what a browser's
    number holds, and "empty" must mean "not sent".
    """

    positivePrompt: str = ""
    negativePrompt: str = ""
    size: str = spec.DEFAULT_SIZE.label
    steps: int = int(_default("steps"))
    CFGScale: float = float(_default("CFGScale"))
    scheduler: str | None = None  # None: the model's default scheduler
    seed: str = ""
    random_seed: bool = True
    numberResults: int = int(_default("numberResults"))
    outputType: str = str(spec.DEFAULTS["outputType"])
    outputFormat: str = str(spec.DEFAULTS["outputFormat"])
    outputQuality: int = int(_default("outputQuality"))
    # Cost analysis needs the engine's reported cost, so the panel asks for it unless told not to.
    includeCost: bool = True
    deliveryMethod: str = str(spec.DEFAULTS["deliveryMethod"])
    ttl: str = ""
    webhookURL: str = ""
    uploadEndpoint: str = ""
    checkContent: bool = bool(spec.DEFAULTS["safety.checkContent"])
    safetyMode: str | None = None  # None: not sent
    cache: str | None = None  # one of spec.CACHE_FAMILIES, or None
    cache_options: dict[str, str] = field(default_factory=dict)  # knob -> text; "" or missing = not sent
    loras: list[LoraEntry] = field(default_factory=list)
    seedImage: bytes | None = None
    seedImage_name: str = ""
    strength: float = float(_default("strength"))
    referenceImages: list[bytes] = field(default_factory=list)

    def copy(self, **changes: Any) -> GenerateState:
        """A copy with some fields changed (lists and dicts are copied too, never shared)."""
        copied = replace(
            self,
            cache_options=dict(self.cache_options),
            loras=[replace(e) for e in self.loras],
            referenceImages=list(self.referenceImages),
        )
        for name, value in changes.items():
            if name not in {f.name for f in fields(self)}:
                raise AttributeError(
                    f"GenerateState has no field {name!r}; fields are {[f.name for f in fields(self)]}"
                )
            setattr(copied, name, value)
        return copied


@dataclass
class RunState:
    """A panel's run, as plain data: whether one is running, since when, how far it got, what came back and what went
    wrong. The panel draws its button, progress bar and status line from this; tests read it."""

    running: bool = False
    started: float | None = None  # time.perf_counter() when the current (or last) run started
    progress: float = 0.0  # 0..1 of the expected work
    expected_s: float | None = None  # how long the run should take, when the cost/latency model can say
    outcome: str = ""  # "" before any run; "success", "partial" or "failed" after one
    ignored_clicks: int = 0  # clicks on Run while a run was going (never a second paid run)
    cancel_requested: bool = False
    results: list[Any] = field(default_factory=list)  # what each successful run returned, oldest first
    errors: list[BaseException] = field(default_factory=list)  # every error shown, oldest first
    # Reported by engines that run step by step (the local one); None/0 from the others.
    step: int = 0
    total_steps: int | None = None
    preview: bytes | None = None  # the latest live preview, PNG
    preview_step: int = 0  # the step it shows
    first_preview_s: float | None = None  # seconds from the click to the first preview (the benchmark reads it)

    @property
    def last_result(self) -> Any:
        return self.results[-1] if self.results else None

    @property
    def last_error(self) -> BaseException | None:
        return self.errors[-1] if self.errors else None

    def begin(self, now: float, expected_s: float | None = None) -> None:
        self.running, self.started, self.progress, self.outcome, self.cancel_requested = True, now, 0.0, "", False
        self.expected_s = expected_s
        self.step, self.total_steps, self.preview, self.preview_step, self.first_preview_s = 0, None, None, 0, None

    def advance(self, step: int, total: int, preview: bytes | None, now: float) -> None:
        """The engine finished ``step`` of ``total`` denoising steps (with a preview every few): the bar follows the
        real steps from now on, instead of the time estimate."""
        if not self.running:
            return  # a late report from a run that already ended
        self.step, self.total_steps = step, total
        self.progress = min(step / total, 1.0) if total else self.progress
        if preview is not None:
            self.preview, self.preview_step = preview, step
            if self.first_preview_s is None and self.started is not None:
                self.first_preview_s = now - self.started

    def end(self, outcome: str) -> None:
        # A finished run's bar is full, coloured by its outcome.
        self.running, self.outcome, self.progress = False, outcome, 1.0


# -- state -> request ----------------------------------------------------------------------------------------------


def _parse_int(text: str, path: str, problems: list[FieldProblem], allowed: str) -> int | None:
    text = text.strip().replace("_", "")
    if not text:
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    problems.append(FieldProblem(path, text, allowed, "must be a whole number"))
    return None


def _parse_number(text: str, path: str, problems: list[FieldProblem], limit: spec.Limit) -> float | int | None:
    if limit.integer:
        return _parse_int(text, path, problems, limit.describe())
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        problems.append(FieldProblem(path, text, limit.describe(), "must be a number"))
        return None


def wire_fields(state: GenerateState) -> tuple[dict[str, Any], list[FieldProblem]]:
    """The request's fields as the form gives them, and the problems found while reading typed text."""
    problems: list[FieldProblem] = []
    size = spec.size_by_label(state.size)
    data: dict[str, Any] = {
        "positivePrompt": state.positivePrompt,
        "width": size.width,
        "height": size.height,
        "steps": state.steps,
        "CFGScale": state.CFGScale,
        "numberResults": state.numberResults,
    }
    if state.negativePrompt:
        data["negativePrompt"] = state.negativePrompt
    if state.scheduler:
        data["scheduler"] = state.scheduler
    if not state.random_seed:
        seed = _parse_int(state.seed, "seed", problems, spec.LIMITS["seed"].describe())
        if seed is None and not problems:
            problems.append(
                FieldProblem("seed", state.seed, spec.LIMITS["seed"].describe(), "is empty; type a seed or tick random")
            )
        elif seed is not None:
            data["seed"] = seed
    for name in _API_OPTIONS_SENT_WHEN_CHANGED:
        value = getattr(state, name)
        if value != spec.DEFAULTS[name]:
            data[name] = value
    if state.includeCost:
        data["includeCost"] = True
    ttl = _parse_int(state.ttl, "ttl", problems, spec.LIMITS["ttl"].describe())
    if ttl is not None:
        data["ttl"] = ttl
    for name in ("webhookURL", "uploadEndpoint"):
        if getattr(state, name).strip():
            data[name] = getattr(state, name).strip()
    if state.checkContent or state.safetyMode:
        data["safety"] = {"checkContent": state.checkContent}
        if state.safetyMode:
            data["safety"]["mode"] = state.safetyMode
    if state.cache:
        options: dict[str, Any] = {state.cache: True}
        for knob in (*spec.CACHE_FAMILIES[state.cache], *CACHE_WINDOW_KNOBS):
            path = f"acceleratorOptions.{knob}"
            value = _parse_number(state.cache_options.get(knob, ""), path, problems, spec.LIMITS[path])
            if value is not None:
                options[knob] = value
        data["acceleratorOptions"] = options
    if state.loras:
        data["lora"] = [
            {"model": entry.model.strip(), "weight": entry.weight, "transformer": entry.transformer}
            for entry in state.loras
        ]
    if state.seedImage is not None:
        data["seedImage"] = state.seedImage
        data["strength"] = state.strength
    if state.referenceImages:
        data["referenceImages"] = list(state.referenceImages)
    return data, problems


def build_request(state: GenerateState) -> ImageInferenceRequest:
    """The validated request the form describes. Raises RequestValidationError naming every problem at once."""
    data, problems = wire_fields(state)
    request = None
    # Cross-field rules only run once every field is valid on its own, so one bad field would hide the rest. Retry
    # with the fields already known to be bad set aside, so the form shows every problem at once.
    attempt = dict(data)
    for _ in range(4):
        try:
            request = ImageInferenceRequest.model_validate(attempt)
            break
        except RequestValidationError as exc:
            problems += [p for p in exc.problems if p not in problems]
            roots = {re.split(r"[.\[/]", p.field)[0] for p in exc.problems}
            if "positivePrompt" in roots:
                attempt["positivePrompt"] = "a placeholder prompt"
            for root in roots - {"positivePrompt"}:
                attempt.pop(root, None)
            if not roots:
                break
    if problems:
        raise RequestValidationError(problems)
    assert request is not None
    return request


def validate_state(state: GenerateState) -> tuple[ImageInferenceRequest | None, list[FieldProblem]]:
    """``(request, [])`` when the form is valid, else ``(None, problems)``."""
    try:
        return build_request(state), []
    except RequestValidationError as exc:
        return None, exc.problems


def control_for_problem(path: str) -> str:
    """The control key a problem's wire path belongs to (``"lora[1].weight"`` -> ``"lora"``)."""
    if path in ("width", "height", "width/height"):
        return "size"
    if path.startswith("lora"):
        return "lora"
    if path.startswith("referenceImages"):
        return "referenceImages"
    return path or GENERAL


def problems_by_control(problems: list[FieldProblem], known: set[str] | frozenset[str]) -> dict[str, list[str]]:
    """Group problem texts by the control that shows them; paths with no control go under GENERAL (never lost)."""
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        key = control_for_problem(problem.field)
        if key not in known:
            key = GENERAL
        grouped.setdefault(key, []).append(str(problem))
    return grouped


# -- request -> state, code ----------------------------------------------------------------------------------------


def state_from_request(request: ImageInferenceRequest) -> GenerateState:
    """The form that reproduces a request (for "reuse these parameters"). The seed is fixed when the request had one."""
    state = GenerateState(
        positivePrompt=request.positivePrompt,
        negativePrompt=request.negativePrompt or "",
        size=request.size.label,
        steps=int(request.effective("steps")),
        CFGScale=float(request.effective("CFGScale")),
        scheduler=request.scheduler,
        seed="" if request.seed is None else str(request.seed),
        random_seed=request.seed is None,
        numberResults=int(request.effective("numberResults")),
        outputType=str(request.effective("outputType")),
        outputFormat=str(request.effective("outputFormat")),
        outputQuality=int(request.effective("outputQuality")),
        includeCost=bool(request.includeCost),
        deliveryMethod=str(request.effective("deliveryMethod")),
        ttl="" if request.ttl is None else str(request.ttl),
        webhookURL=request.webhookURL or "",
        uploadEndpoint=request.uploadEndpoint or "",
    )
    if request.safety is not None:
        state.checkContent = bool(request.safety.checkContent)
        state.safetyMode = request.safety.mode
    options = request.acceleratorOptions
    if options is not None and options.enabled_cache:
        state.cache = options.enabled_cache
        for knob in (*spec.CACHE_FAMILIES[state.cache], *CACHE_WINDOW_KNOBS):
            value = getattr(options, knob)
            if value is not None:
                state.cache_options[knob] = f"{value:g}" if isinstance(value, float) else str(value)
    for lora in request.lora or []:
        state.loras.append(
            LoraEntry(
                model=lora.model,
                weight=float(lora.weight if lora.weight is not None else _default("lora.weight")),
                transformer=lora.transformer or str(spec.DEFAULTS["lora.transformer"]),
            )
        )
    if request.seedImage is not None and request.seedImage.kind in ("bytes", "path", "data_uri", "base64"):
        state.seedImage = request.seedImage.read_bytes()
        state.seedImage_name = "from a previous run"
        state.strength = float(request.effective("strength"))
    state.referenceImages = [
        ref.read_bytes() for ref in request.referenceImages or [] if ref.kind in ("bytes", "path", "data_uri", "base64")
    ]
    return state


def code_for_request(request: ImageInferenceRequest, *, session_name: str = "session") -> str:
    """Python that reproduces the request on a Session (the taskUUID is left out: a rerun is a new task)."""
    data = request.model_dump(exclude_none=True, exclude={"taskUUID", "taskType", "model"})
    prompt = data.pop("positivePrompt")
    image_note = ""
    if "seedImage" in data:
        image = request.seedImage
        assert image is not None
        if image.sent_as_is:
            data["seedImage"] = image.to_wire()
        else:
            data["seedImage"] = "PATH_TO_YOUR_IMAGE.png"
            image_note = "# seedImage: the panel's uploaded image; replace the placeholder with its file path.\n"
    if "referenceImages" in data:
        references = request.referenceImages or []
        data["referenceImages"] = [
            ref.to_wire() if ref.sent_as_is else f"PATH_TO_REFERENCE_{index + 1}.png"
            for index, ref in enumerate(references)
        ]
        if not all(ref.sent_as_is for ref in references):
            image_note += "# referenceImages: uploaded in the panel; replace the placeholders with their file paths.\n"
    lines = ["import kandinsky_nb as knb", "", f"{session_name} = knb.Session()", image_note.rstrip("\n")]
    call = [f"generation = {session_name}.generate(", f"    {prompt!r},"]
    for key, value in data.items():
        text = pprint.pformat(value, width=100, sort_dicts=False)
        text = text.replace("\n", "\n    ")
        call.append(f"    {key}={text},")
    call.append(")")
    return "\n".join(line for line in [*lines, *call] if line != "") + "\n"
