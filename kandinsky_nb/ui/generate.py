"""GeneratePanel: one form for every request parameter, the exact JSON it sends, its estimated cost, and Generate.

The panel is a view over :class:`~kandinsky_nb.ui.state.GenerateState`: widgets write the state, pure functions turn
the state into a validated request (or the problems shown next to each control), and Generate hands the request to
``session.agenerate`` as a task on the kernel's running event loop, so the notebook stays responsive while it runs.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from .. import spec
from .._media import data_uri
from ..errors import ConfigurationError, FieldProblem, KandinskyNBError, UnsupportedByEngineError
from ..html import (
    STYLE,
    format_seconds,
    format_usd,
    html_from_engine,
    html_from_error,
    html_from_problems,
    html_from_request_json,
    thumbnail,
)
from ..planning import pricing
from ..planning.estimates import Estimate
from ..session.engines import choose_engine
from ..types import Generation, ImageInferenceRequest
from . import state as st
from ._common import ErrorArea, cost_source_note, css, limit_slider, number_box, run_in_background, session_or_default
from .binding import FormBinding
from .keys import SubmitShortcut
from .viewer import RunViewer

__all__ = ["GeneratePanel", "local_scheduler_notes"]

_WIDE = widgets.Layout(width="100%")
_STYLE = {"description_width": "initial"}
_CACHE_LABELS = {
    "fbCache": "first-block cache (fbCache)",
    "teaCache": "TeaCache (teaCache)",
    "dbCache": "dual-block cache (dbCache)",
}
# Dropdowns hold "" for "not sent": a widget Dropdown whose value is None shows no selection at all.
_UNSET = ""


def _to_choice(value: str | None) -> str:
    return value or _UNSET


def _from_choice(value: str) -> str | None:
    return value or None


def _set_cache_knob(state: st.GenerateState, knob: str, text: str) -> None:
    if text.strip():
        state.cache_options[knob] = text
    else:  # empty: not sent
        state.cache_options.pop(knob, None)


def _set_seed_image(state: st.GenerateState, uploads: Any) -> None:
    # Clearing the upload widget is the panel's own write ("Remove images"); an upload sets the image and its name.
    if uploads:
        upload = uploads[0]
        state.seedImage, state.seedImage_name = bytes(upload["content"]), str(upload["name"])


def _set_reference_images(state: st.GenerateState, uploads: Any) -> None:
    state.referenceImages = [bytes(upload["content"]) for upload in uploads]


# How many past generations the results area keeps on screen (the run log keeps all of them).
_RESULTS_SHOWN = 4
# A click on a result's thumbnail opens it at up to this many pixels a side (a JPEG copy; the file keeps the original).
_ZOOM_SIDE = 1024


def local_scheduler_notes() -> dict[str, str]:
    """Scheduler name -> why the local engine refuses it, read from the local engine's pure table ({} when that
    table is not installed)."""
    try:
        from ..backends.local.schedulers import LOCAL_SCHEDULERS
    except ImportError:
        return {}
    return {name: choice.note for name, choice in LOCAL_SCHEDULERS.items() if not choice.supported}


# Sliders of limited numbers; each gets a number box that shows and takes the exact value.
_SLIDERS = ("steps", "CFGScale", "numberResults", "outputQuality", "strength")

# The "Output & API options" section, in the order shown.
_OUTPUT_OPTIONS = (
    "outputType",
    "outputFormat",
    "outputQuality",
    "includeCost",
    "deliveryMethod",
    "ttl",
    "webhookURL",
    "uploadEndpoint",
)

# Controls whose widget value is the state field of the same name, as is (the rest need a conversion).
_PLAIN_CONTROLS = (
    "positivePrompt",
    "negativePrompt",
    "size",
    "steps",
    "CFGScale",
    "seed",
    "random_seed",
    "numberResults",
    *_OUTPUT_OPTIONS,
    "strength",
)


class GeneratePanel(widgets.VBox):
    """A form for one ``imageInference`` request, with a live JSON preview, a cost estimate and a Generate button.

    >>> panel = GeneratePanel(session)          # doctest: +SKIP
    >>> panel.update(positivePrompt="a red fox in snow", steps=28)
    >>> panel.request.to_wire()["steps"]
    28

    ``state`` holds every value (a plain dataclass), ``request`` the validated request or None, ``problems`` what is
    wrong, ``run_state`` the run (running, progress, results, errors), ``task`` the running generation (an asyncio
    task) and ``generations`` what came back.
    """

    def __init__(self, session: Any = None, *, state: st.GenerateState | None = None, **box_kwargs: Any) -> None:
        self._session = session
        self.state = state.copy() if state is not None else st.GenerateState()
        self.request: ImageInferenceRequest | None = None
        self.problems: list[FieldProblem] = []
        self.task: asyncio.Task[Any] | None = None
        self.run_state = st.RunState()
        self._listeners: list[Callable[[Generation], Any]] = []
        self.errors = ErrorArea("knb-generate-errors", self.run_state.errors)
        self.binding: FormBinding[st.GenerateState] = FormBinding(
            lambda: self.state, self._on_edit, wrap=self.errors.guard("Generate form")
        )
        # A preview that cannot be drawn is shown as an error and never stops the run it reports on.
        self._on_step_guarded = self.errors.guard("live progress")(self._on_step)

        self.controls: dict[str, widgets.Widget] = {}
        self._problem_labels: dict[str, widgets.HTML] = {}
        self._build_controls()
        self._build_outputs()
        super().__init__(children=self._layout(), **box_kwargs)
        css(self, "knb-panel", "knb-generate-panel")
        self._write_widgets()
        self._draw_engine()
        self._refresh()

    # -- public API --------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a generation is running (one at a time per panel)."""
        return self.run_state.running

    @property
    def ignored_clicks(self) -> int:
        """Clicks on Generate while a generation was running (ignored: a double click never pays twice)."""
        return self.run_state.ignored_clicks

    @property
    def generations(self) -> list[Generation]:
        """What each successful Generate in this panel returned, oldest first."""
        return self.run_state.results

    @property
    def session(self) -> Any:
        """The Session this panel runs on (built from the environment on first use when none was given)."""
        if self._session is None:
            self._session = session_or_default(None)
            self._draw_engine()
        return self._session

    def update(self, **changes: Any) -> None:
        """Set form values by state field name (``update(positivePrompt="...", steps=30)``) and refresh the view."""
        if isinstance(changes.get("seed"), int):  # code says seed=7; the form keeps what was typed, as text
            changes["seed"] = str(changes["seed"])
            changes.setdefault("random_seed", False)
        self.state = self.state.copy(**changes)
        self._write_widgets()
        self._refresh()

    def load_request(self, request: ImageInferenceRequest) -> None:
        """Fill the form from a request (for example one from the run log): "reuse these parameters"."""
        self.state = st.state_from_request(request)
        self._write_widgets()
        self._refresh()

    def draw_seed(self) -> int:
        """Draw a random seed (in the range the engine itself draws from), fix it in the form, and return it."""
        seed = secrets.randbelow(spec.RANDOM_SEED_MAX + 1)
        self.update(seed=str(seed), random_seed=False)
        return seed

    def on_generation(self, callback: Callable[[Generation], Any]) -> None:
        """Call ``callback(generation)`` after each successful Generate (a Gallery uses it to refresh itself)."""
        self._listeners.append(callback)

    def code(self) -> str:
        """Python that reproduces the current request ("" while the form is invalid)."""
        return st.code_for_request(self.request) if self.request is not None else ""

    def generate(self) -> asyncio.Task[Any] | None:
        """What the Generate button does: start a generation (a task when an event loop runs, else synchronously)."""
        self._on_generate(self.generate_button)
        return self.task

    # -- building ----------------------------------------------------------------------------------------------
    def _add(self, key: str, control: widgets.Widget) -> widgets.Widget:
        self.controls[key] = control
        css(control, "knb-control", f"knb-{key.replace('.', '-')}")
        return control

    def _problem_label(self, key: str) -> widgets.HTML:
        label = css(widgets.HTML(""), "knb-problem", f"knb-problem-{key.replace('.', '-')}")
        self._problem_labels[key] = label
        return label

    def _with_problems(self, key: str, *parts: widgets.Widget) -> widgets.VBox:
        if key in self.number_boxes:
            parts = (parts[0], self.number_boxes[key], *parts[1:])
        row = parts[0] if len(parts) == 1 else widgets.HBox(list(parts))
        return widgets.VBox([row, self._problem_label(key)])

    def _build_controls(self) -> None:
        low, high = spec.TEXT_LIMITS["positivePrompt"]
        self._add(
            "positivePrompt",
            widgets.Textarea(
                placeholder=f"Describe the image ({low} to {high} characters)",
                description="Prompt",
                layout=widgets.Layout(width="100%", height="80px"),
                style=_STYLE,
            ),
        )
        low, high = spec.TEXT_LIMITS["negativePrompt"]
        self._add(
            "negativePrompt",
            widgets.Textarea(
                placeholder=f"What to avoid (optional, {low} to {high} characters)",
                description="Negative",
                layout=widgets.Layout(width="100%", height="48px"),
                style=_STYLE,
            ),
        )
        self.counters = {key: css(widgets.HTML(""), "knb-counter", f"knb-counter-{key}") for key in spec.TEXT_LIMITS}
        self._add(
            "size",
            widgets.Dropdown(
                options=[(f"{s.label} — {s}", s.label) for s in spec.SIZES], description="Size", style=_STYLE
            ),
        )
        self._add("steps", limit_slider("steps", "Steps", readout=False))
        self._add("CFGScale", limit_slider("CFGScale", "CFG scale", readout=False))
        self._add(
            "scheduler", widgets.Dropdown(options=self._scheduler_options(), description="Scheduler", style=_STYLE)
        )
        self._add(
            "seed",
            widgets.Text(
                placeholder=f"0 to {spec.SEED_MAX}",
                description="Seed",
                style=_STYLE,
                tooltip=spec.LIMITS["seed"].describe(),
            ),
        )
        self._add("random_seed", widgets.Checkbox(description="random seed", indent=False))
        self.dice_button = css(
            widgets.Button(
                icon="random", tooltip="draw a new random seed and fix it", layout=widgets.Layout(width="36px")
            ),
            "knb-dice",
        )
        self.dice_button.on_click(self.errors.guard("Random seed")(lambda _b: self.draw_seed()))
        self._add("numberResults", limit_slider("numberResults", "Images", readout=False))
        # Output & API options.
        self._add(
            "outputType", widgets.Dropdown(options=list(spec.OUTPUT_TYPES), description="outputType", style=_STYLE)
        )
        self._add(
            "outputFormat",
            widgets.Dropdown(options=list(spec.OUTPUT_FORMATS), description="outputFormat", style=_STYLE),
        )
        self._add("outputQuality", limit_slider("outputQuality", "outputQuality", readout=False))
        self._add("includeCost", widgets.Checkbox(description="includeCost (report cost per image)", indent=False))
        self._add(
            "deliveryMethod",
            widgets.Dropdown(options=list(spec.DELIVERY_METHODS), description="deliveryMethod", style=_STYLE),
        )
        self._add(
            "ttl",
            widgets.Text(
                placeholder=spec.LIMITS["ttl"].describe() + " seconds (URL output only)",
                description="ttl",
                style=_STYLE,
            ),
        )
        self._add(
            "webhookURL", widgets.Text(placeholder="https://...", description="webhookURL", style=_STYLE, layout=_WIDE)
        )
        self._add(
            "uploadEndpoint",
            widgets.Text(placeholder="https://...", description="uploadEndpoint", style=_STYLE, layout=_WIDE),
        )
        # Safety.
        self._add("safety.checkContent", widgets.Checkbox(description="checkContent", indent=False))
        self._add(
            "safety.mode",
            widgets.Dropdown(
                options=[("not sent", _UNSET), *[(m, m) for m in spec.SAFETY_MODES]], description="mode", style=_STYLE
            ),
        )
        # Acceleration: one cache family at a time, its own knobs plus the shared window.
        self._add(
            "acceleratorOptions",
            widgets.Dropdown(
                options=[("off", _UNSET), *[(_CACHE_LABELS.get(f, f), f) for f in spec.CACHE_FAMILIES]],
                description="Cache",
                style=_STYLE,
            ),
        )
        self.cache_knobs: dict[str, widgets.Text] = {}
        for knob in (*[k for knobs in spec.CACHE_FAMILIES.values() for k in knobs], *st.CACHE_WINDOW_KNOBS):
            limit = spec.LIMITS[f"acceleratorOptions.{knob}"]
            default = "" if limit.default is None else f" (default {limit.default:g})"
            text = widgets.Text(placeholder=limit.describe() + default, description=knob, style=_STYLE)
            self.cache_knobs[knob] = text
            self._add(f"acceleratorOptions.{knob}", text)
        # LoRA list.
        self.lora_rows = css(widgets.VBox([]), "knb-lora-rows")
        self.add_lora_button = css(widgets.Button(description="Add LoRA", icon="plus"), "knb-add-lora")
        self.add_lora_button.on_click(self.errors.guard("Add LoRA")(self._on_add_lora))
        self.controls["lora"] = self.lora_rows
        # Image input for editing.
        self._add("seedImage", widgets.FileUpload(accept="image/*", multiple=False, description="Image to edit"))
        self.seed_image_preview = css(widgets.HTML(""), "knb-seed-image-preview")
        self.clear_image_button = css(widgets.Button(description="Remove images", icon="times"), "knb-clear-image")
        self.clear_image_button.on_click(self.errors.guard("Remove image")(self._on_clear_image))
        self._add("strength", limit_slider("strength", "strength", readout=False))
        self._add(
            "referenceImages", widgets.FileUpload(accept="image/*", multiple=True, description="Reference images")
        )
        # Each slider has a number box beside it that takes any typed value (see number_box).
        self.number_boxes: dict[str, widgets.Widget] = {
            key: css(number_box(key), "knb-number", f"knb-number-{key}") for key in _SLIDERS
        }
        self._bind_controls()

    def _bind_controls(self) -> None:
        c, bind = self.controls, self.binding
        for key in _PLAIN_CONTROLS:
            bind.attribute(c[key], key)
        for key, box in self.number_boxes.items():
            bind.attribute(box, key)
        bind.attribute(c["scheduler"], "scheduler", to_widget=_to_choice, from_widget=_from_choice)
        bind.attribute(c["safety.checkContent"], "checkContent")
        bind.attribute(c["safety.mode"], "safetyMode", to_widget=_to_choice, from_widget=_from_choice)
        bind.attribute(c["acceleratorOptions"], "cache", to_widget=_to_choice, from_widget=_from_choice)
        for knob, text in self.cache_knobs.items():
            bind.bind(
                text,
                read=lambda s, knob=knob: s.cache_options.get(knob, ""),
                write=lambda s, value, knob=knob: _set_cache_knob(s, knob, value),
            )
        # File uploads are read, never written: a browser's file input cannot be filled from code.
        bind.bind(c["seedImage"], read=None, write=_set_seed_image)
        bind.bind(c["referenceImages"], read=None, write=_set_reference_images)

    def _scheduler_options(self) -> list[tuple[str, str]]:
        refused = local_scheduler_notes()
        options: list[tuple[str, str]] = [(f"model default ({spec.MODEL_DEFAULT_SCHEDULER})", _UNSET)]
        for name in spec.SCHEDULERS:
            options.append((f"{name} — not on the local engine" if name in refused else name, name))
        return options

    def _build_outputs(self) -> None:
        self.generate_button = css(
            widgets.Button(
                description="Generate", button_style="primary", icon="play", tooltip="Generate (Ctrl+Enter, ⌘+Enter)"
            ),
            "knb-generate",
        )
        self.generate_button.on_click(self.errors.guard("Generate")(self._on_generate))
        # Ctrl/Cmd+Enter anywhere in the panel does what the button does (ignored while running, like a click).
        self.shortcut = SubmitShortcut(
            "knb-generate-panel", self.errors.guard("Generate")(lambda: self._on_generate(None))
        )
        self.status = css(widgets.HTML(""), "knb-status")
        self.progress = css(
            widgets.FloatProgress(value=0, min=0, max=1, layout=widgets.Layout(width="160px", visibility="hidden")),
            "knb-progress",
        )
        self.cost_label = css(widgets.HTML(""), "knb-cost")
        self.json_preview = css(widgets.HTML(""), "knb-json-preview")
        self.code_area = css(
            widgets.Textarea(layout=widgets.Layout(width="100%", height="180px"), disabled=False), "knb-code"
        )
        self.results = css(widgets.HTML(""), "knb-results")
        # One "View" button per image of the latest generation: it opens the run viewer (Reuse here, Re-run, Compare,
        # copy as code) under the results; a click on a thumbnail still enlarges it in place.
        self.view_buttons = css(widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap")), "knb-view-results")
        self.viewer_area = widgets.VBox([])
        self.viewer: RunViewer | None = None
        # The live preview the local engine sends every few steps, shown only while a run is going.
        self.preview_image = css(
            widgets.Image(format="png", layout=widgets.Layout(width="256px", max_width="100%", height="auto")),
            "knb-preview",
        )
        self.preview_caption = css(widgets.HTML(""), "knb-preview-caption")
        self.preview_box = css(
            widgets.VBox([self.preview_image, self.preview_caption], layout=widgets.Layout(display="none")),
            "knb-preview-box",
        )
        self.engine_line = css(widgets.HTML(""), "knb-engine-line")

    def _layout(self) -> list[widgets.Widget]:
        c = self.controls
        main = widgets.VBox(
            [
                self._with_problems("positivePrompt", c["positivePrompt"]),
                self.counters["positivePrompt"],
                self._with_problems("negativePrompt", c["negativePrompt"]),
                self.counters["negativePrompt"],
                widgets.HBox(
                    [self._with_problems("size", c["size"]), self._with_problems("scheduler", c["scheduler"])]
                ),
                widgets.HBox(
                    [self._with_problems("steps", c["steps"]), self._with_problems("CFGScale", c["CFGScale"])]
                ),
                widgets.HBox(
                    [
                        self._with_problems("seed", c["seed"], self.dice_button, c["random_seed"]),
                        self._with_problems("numberResults", c["numberResults"]),
                    ]
                ),
            ]
        )
        output_box = widgets.VBox([self._with_problems(key, c[key]) for key in _OUTPUT_OPTIONS])
        safety_box = widgets.VBox([self._with_problems(k, c[k]) for k in ("safety.checkContent", "safety.mode")])
        accel_box = widgets.VBox(
            [self._with_problems("acceleratorOptions", c["acceleratorOptions"])]
            + [self._with_problems(f"acceleratorOptions.{knob}", text) for knob, text in self.cache_knobs.items()]
        )
        self._knob_boxes = {knob: accel_box.children[i + 1] for i, knob in enumerate(self.cache_knobs)}
        lora_box = widgets.VBox([self.lora_rows, self.add_lora_button, self._problem_label("lora")])
        image_box = widgets.VBox(
            [
                widgets.HTML(
                    "Editing: the image is sent as <code>seedImage</code> (not in the model page's table; the local "
                    "engine honours it, the cloud may refuse it)."
                ),
                self._with_problems("seedImage", c["seedImage"], self.clear_image_button),
                self.seed_image_preview,
                self._with_problems("strength", c["strength"]),
                self._with_problems("referenceImages", c["referenceImages"]),
            ]
        )
        self.accordion = css(
            widgets.Accordion(children=[output_box, safety_box, accel_box, lora_box, image_box]), "knb-advanced"
        )
        for index, title in enumerate(
            ["Output & API options", "Safety", "Acceleration (acceleratorOptions)", "LoRA", "Image input (editing)"]
        ):
            self.accordion.set_title(index, title)
        self.preview_tabs = widgets.Tab(children=[self.json_preview, self.code_area])
        self.preview_tabs.set_title(0, "Request JSON")
        self.preview_tabs.set_title(1, "Copy as code")
        action_row = widgets.HBox([self.generate_button, self.progress, self.status])
        return [
            widgets.HTML(STYLE),
            self.engine_line,
            main,
            self.accordion,
            self.cost_label,
            action_row,
            self.preview_box,
            self._problem_label(st.GENERAL),
            self.errors.widget,
            self.results,
            self.view_buttons,
            self.viewer_area,
            self.preview_tabs,
            self.shortcut,
        ]

    # -- state <-> widgets ---------------------------------------------------------------------------------------
    def _write_widgets(self) -> None:
        """Push the state into the widgets (the binding keeps these writes from feeding back)."""
        self._rebuild_lora_rows()
        self.binding.push()
        self._show_seed_image()

    def _on_edit(self, state: st.GenerateState, change: dict[str, Any]) -> None:
        """A person edited a control: ``state`` is the form with that edit applied."""
        self.state = state
        if change["owner"] is self.controls["seedImage"]:
            self._show_seed_image()
        self._refresh()

    def _rebuild_lora_rows(self) -> None:
        self.binding.forget(*[part for row in self.lora_rows.children for part in row.children[:3]])
        rows = []
        for index, entry in enumerate(self.state.loras):
            model = widgets.Text(value=entry.model, placeholder="LoRA model id (AIR), e.g. civitai:123@456")
            weight = limit_slider("lora.weight", "weight", value=entry.weight)
            transformer = widgets.Dropdown(options=list(spec.LORA_TRANSFORMERS), value=entry.transformer)
            remove = widgets.Button(icon="times", tooltip="remove this LoRA", layout=widgets.Layout(width="36px"))
            row = css(widgets.HBox([model, weight, transformer, remove]), "knb-lora-row")
            for part, name in ((model, "model"), (weight, "weight"), (transformer, "transformer")):
                self.binding.bind(
                    part,
                    read=lambda s, index=index, name=name: getattr(s.loras[index], name),
                    write=lambda s, value, index=index, name=name: setattr(s.loras[index], name, value),
                )
            remove.on_click(self.errors.guard("Remove LoRA")(lambda _b, index=index: self._on_remove_lora(index)))
            rows.append(row)
        self.lora_rows.children = rows

    def _on_add_lora(self, _button: Any) -> None:
        self.update(loras=[*self.state.loras, st.LoraEntry()])

    def _on_remove_lora(self, index: int) -> None:
        loras = list(self.state.loras)
        del loras[index]
        self.update(loras=loras)

    def _on_clear_image(self, _button: Any) -> None:
        with self.binding.holding():
            self.controls["seedImage"].value = ()
            self.controls["referenceImages"].value = ()
        self.update(seedImage=None, seedImage_name="", referenceImages=[])

    def _show_seed_image(self) -> None:
        s = self.state
        if s.seedImage is None:
            self.seed_image_preview.value = ""
            return
        try:
            small, fmt = thumbnail(s.seedImage, 128)
        except Exception as exc:  # not an image Pillow can read: the request validation says so next to the control
            self.seed_image_preview.value = f"<i>{html.escape(s.seedImage_name)}: cannot preview ({exc})</i>"
            return
        self.seed_image_preview.value = (
            f'<img src="{data_uri(small, fmt)}"/> <small>{html.escape(s.seedImage_name)}</small>'
        )

    # -- the live view ---------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Re-derive everything shown from the state: problems, JSON, cost, code, which controls are live."""
        s, c = self.state, self.controls
        self.request, self.problems = st.validate_state(s)
        if self.request is not None and self._session is not None:
            # The engine's own refusals (a scheduler the local engine cannot honour) show like any other problem.
            try:
                self._session.check(self.request)
            except UnsupportedByEngineError as exc:
                self.request, self.problems = None, exc.problems
            except Exception as exc:  # the check itself failed: say so, and let the engine decide at Generate
                self.errors.show(exc, "checking the request against the engine")
        grouped = st.problems_by_control(self.problems, frozenset(self._problem_labels))
        for key, label in self._problem_labels.items():
            label.value = html_from_problems(grouped.get(key, []))
        for key, (low, high) in spec.TEXT_LIMITS.items():
            length = len(getattr(s, key))
            over = length > high or (0 < length < low)
            self.counters[
                key
            ].value = f'<span class="{"knb-over" if over else "knb-muted"}">{length} / {high} characters</span>'
        c["seed"].disabled = s.random_seed
        c["strength"].disabled = self.number_boxes["strength"].disabled = s.seedImage is None
        c["safety.mode"].disabled = False
        for knob, box in self._knob_boxes.items():
            relevant = s.cache is not None and (knob in st.CACHE_WINDOW_KNOBS or knob in spec.CACHE_FAMILIES[s.cache])
            box.layout.display = None if relevant else "none"
        self._draw_run()
        if self.request is None:
            # Each problem is shown once, next to its control; the preview only says why it is empty.
            count = len(self.problems)
            self.json_preview.value = (
                f'<span class="knb-muted">The request JSON appears here once the form is valid ({count} problem'
                f"{'s' if count != 1 else ''} shown next to the controls).</span>"
            )
            self.cost_label.value = (
                '<span class="knb-muted">Fix the problems shown to see the request and its cost.</span>'
            )
            self.code_area.value = ""
            return
        self.json_preview.value = html_from_request_json(self.request.to_wire())
        self.code_area.value = st.code_for_request(self.request)
        estimate = self._estimate(self.request)
        cost, seconds = estimate.cost_usd, estimate.seconds
        try:
            source = cost_source_note(estimate.cost_source, *self._engine())
        except KandinskyNBError:  # no engine chosen yet (a bad KANDINSKY_NB_ENGINE): the engine line says why
            source = estimate.cost_source
        self.cost_label.value = (
            f"<b>Estimated cost:</b> {format_usd(cost)} ({html.escape(source)}; "
            f"{self.request.width}x{self.request.height}, {self.request.effective('steps')} steps, "
            f"{self.request.effective('numberResults')} image(s))"
            + (f" · about {format_seconds(seconds)}" if seconds is not None else "")
            + f" <small>· the seed is {'drawn by the engine' if self.request.seed is None else 'fixed'}</small>"
            + self._budget_html(cost)
        )

    def _budget_html(self, cost: float) -> str:
        budget = getattr(self._session, "budget", None)
        if budget is None or budget.cap is None:
            return ""
        left = budget.left
        warning = " — <b>not enough for this request</b>" if left is not None and cost > left else ""
        return f"<br><small>Budget: {format_usd(budget.spent)} spent of {format_usd(budget.cap)}{warning}</small>"

    def _engine(self) -> tuple[str, bool]:
        """The engine's name and whether it runs demo weights: the session's, or (before one is opened) the one the
        environment chooses."""
        if self._session is not None:
            return self._session.engine, bool(self._session.demo)
        name = choose_engine()
        return ("local", True) if name == "demo" else (name, False)

    def _draw_engine(self) -> None:
        try:
            engine, demo = self._engine()
        except KandinskyNBError as exc:  # a bad KANDINSKY_NB_ENGINE: say so where the engine is named
            self.engine_line.value = html_from_error(exc, context="Engine")
            return
        when = "" if self._session is not None else "chosen from the environment; opened at the first Generate"
        self.engine_line.value = html_from_engine(engine, demo, when=when)

    def _estimate(self, request: ImageInferenceRequest) -> Estimate:
        """THE estimate (planning.pricing): the session's model of its logged runs, or the list price without one. The
        figure shown is the one the budget reserves."""
        return pricing.estimate(request, None if self._session is None else self._session.cost_model())

    # -- Generate ----------------------------------------------------------------------------------------------
    def _on_generate(self, _button: Any) -> None:
        if self.running:
            # One generation at a time per panel: a double click must not pay twice.
            self.run_state.ignored_clicks += 1
            self.status.value = (
                f"<b>Still generating</b>: click ignored ({self.ignored_clicks} so far); wait for this one to finish."
            )
            return
        # The request is the one on screen, taskUUID included (the widgets keep it current as they change).
        if self.request is None:
            self.status.value = "<b>Fix the problems shown next to the controls first.</b>"
            return
        request = self.request
        session = self.session
        self.errors.clear()
        self._begin(request)
        self.task = run_in_background(
            lambda: self._agenerate(session, request), lambda: self._generate_now(session, request)
        )

    def _expected_seconds(self, request: ImageInferenceRequest) -> float | None:
        try:
            return self._estimate(request).seconds
        except Exception:  # an estimate is a nicety; never let it break a run
            return None

    def _begin(self, request: ImageInferenceRequest) -> None:
        self.run_state.begin(time.perf_counter(), self._expected_seconds(request))
        self.status.value = f"Generating {request.effective('numberResults')} image(s)…"
        self._draw_run()

    def _tick(self, request: ImageInferenceRequest) -> None:
        run = self.run_state
        elapsed = time.perf_counter() - (run.started or 0.0)
        expected = run.expected_s
        if run.total_steps:  # the engine reports its steps: the bar follows them (RunState.advance), not the clock
            self.status.value = f"Generating… step {run.step} of {run.total_steps} · {format_seconds(elapsed)}"
            self._draw_run()
            return
        if expected:
            # An estimate, so it stops short of full until the answer arrives.
            run.progress = min(elapsed / expected, 0.95)
        self.status.value = f"Generating… {format_seconds(elapsed)}" + (
            f" of about {format_seconds(expected)}" if expected else ""
        )
        self._draw_run()

    def _on_step(self, step: int, total: int, preview: bytes | None) -> None:
        """A step report, on the panel's own thread: the bar, the status and the live preview follow it."""
        run = self.run_state
        run.advance(step, total, preview, time.perf_counter())
        if not run.running:
            return
        if preview is not None:
            self.preview_image.value = preview
            noise = " — demo weights: noise, as their images are" if self._engine()[1] else ""
            self.preview_caption.value = (
                f'<small class="knb-muted">Live preview after step {run.preview_step} of {total} '
                f"(a quick projection of the latents, not the final image{noise})</small>"
            )
        self._tick(self.request)  # type: ignore[arg-type]

    def _draw_run(self) -> None:
        """The button and progress bar, drawn from ``run_state``."""
        run = self.run_state
        self.generate_button.disabled = self.request is None or run.running
        self.generate_button.description = "Generating…" if run.running else "Generate"
        self.progress.layout.visibility = "hidden" if run.started is None else "visible"
        self.progress.bar_style = {"success": "success", "failed": "danger"}.get(run.outcome, "info")
        # With no time estimate yet (too few runs logged), a moving bar says "working" without inventing a fraction.
        busy = run.running and not run.expected_s and not run.total_steps
        (self.progress.add_class if busy else self.progress.remove_class)("knb-busy")
        self.progress.value = 1.0 if busy else run.progress
        self.preview_box.layout.display = None if run.running and run.preview is not None else "none"

    async def _agenerate(self, session: Any, request: ImageInferenceRequest) -> Generation | None:
        async def ticker() -> None:
            while True:
                self._tick(request)
                await asyncio.sleep(0.25)

        ticking = asyncio.ensure_future(ticker())
        loop = asyncio.get_running_loop()

        def on_step(step: int, total: int, preview: Any) -> None:
            # Called on the engine's worker thread: encode the preview there, draw on the loop's thread.
            loop.call_soon_threadsafe(self._on_step_guarded, step, total, _preview_png(preview))

        try:
            generation = await session.agenerate(request=request, on_step=on_step)
        except Exception as exc:
            self._failed(exc)
            return None
        finally:
            ticking.cancel()
        self._finished(generation)
        return generation

    def _generate_now(self, session: Any, request: ImageInferenceRequest) -> Generation | None:
        try:
            generation = session.generate(
                request=request,
                on_step=lambda step, total, preview: self._on_step_guarded(step, total, _preview_png(preview)),
            )
        except Exception as exc:
            self._failed(exc)
            return None
        self._finished(generation)
        return generation

    def open_result(self, index: int = 0, generation: Generation | None = None) -> RunViewer:
        """Open image ``index`` of a generation (the latest by default) in the run viewer under the results."""
        generation = generation if generation is not None else self.run_state.last_result
        if generation is None:
            raise ConfigurationError("no result to open yet; click Generate first")
        rows = _image_rows(self.session, generation)
        if not 0 <= index < len(rows):
            raise ConfigurationError(
                f"index={index}: this generation has {len(rows)} image(s) in the run log; use 0 to {len(rows) - 1}"
            )
        if self.viewer is None:
            # Reuse fills this very panel: the form goes back to the opened image's request, seed included.
            self.viewer = RunViewer(self.session, panel=self)
            self.viewer_area.children = [self.viewer]
        self.viewer.show(rows[index])
        return self.viewer

    def _offer_views(self, generation: Generation) -> None:
        buttons = []
        for index, row in enumerate(_image_rows(self.session, generation)):
            button = css(
                widgets.Button(
                    description=f"View image {index + 1}",
                    icon="search-plus",
                    tooltip=f"open run #{row['id']} in the viewer: full image, parameters, reuse, re-run, compare, code",
                ),
                "knb-view-result",
            )
            button.on_click(self.errors.guard("View")(lambda _b, i=index: self.open_result(i, generation)))
            buttons.append(button)
        self.view_buttons.children = buttons

    def _failed(self, error: BaseException) -> None:
        self.run_state.end("failed")
        elapsed = time.perf_counter() - (self.run_state.started or 0.0)
        self.status.value = f"<b>Failed</b> after {format_seconds(elapsed)}"
        self.errors.show(error, "Generate")
        self._refresh()  # a new request (its own taskUUID) for the next click, and the button drawn enabled

    def _finished(self, generation: Generation) -> None:
        waited = time.perf_counter() - (self.run_state.started or 0.0)
        self.run_state.results.append(generation)
        self.run_state.end("success")
        self._refresh()  # a new request (its own taskUUID) for the next click, and the button drawn enabled
        self.status.value = (
            f"Done: {len(generation.images)} image(s) in {format_seconds(waited)}{_time_split(generation, waited)}, "
            f"cost {format_usd(generation.cost)} · {len(self.generations)} generation(s) in this panel · "
            f'<span class="knb-log-count">{len(self.session.runs)}</span> row(s) in the run log'
        )
        self.results.value = "".join(
            g.to_html(zoom_side=_ZOOM_SIDE, style=False) + "<hr>" for g in reversed(self.generations[-_RESULTS_SHOWN:])
        )
        self._offer_views(generation)
        for callback in self._listeners:
            try:
                callback(generation)
            except Exception as exc:  # a listener's failure is shown, and never undoes the generation
                self.errors.show(exc, "after Generate")


def _image_rows(session: Any, generation: Generation) -> list[dict[str, Any]]:
    """The run-log rows of a generation's images, in the engine's order."""
    rows = [row for row in session.runs.get(generation.task_uuid) if row.get("image_path")]
    return sorted(rows, key=lambda row: row.get("result_index") or 0)


def _preview_png(preview: Any) -> bytes | None:
    """A step's preview (a small PIL image, or None) as PNG bytes for the preview widget."""
    if preview is None:
        return None
    import io

    buffer = io.BytesIO()
    preview.save(buffer, format="PNG")
    return buffer.getvalue()


def _time_split(generation: Generation, waited: float) -> str:
    """Where the wait went, when the engine measured it: a first run also loads the model (the run log keeps that
    apart, as ``load_s``), which is not what the next runs will take."""
    loading = generation.details.get("load_seconds")
    if not isinstance(loading, int | float) or loading < 0.01:  # a loaded pipeline takes well under 1 ms
        return ""
    return f" ({format_seconds(loading)} of it loading the model, once per session)"
