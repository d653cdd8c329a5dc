"""The local engine's decisions, as pure functions of the request: no torch, no files, no pipelines.

How to run a request (:func:`plan_request`: text to image, editing or image to image; which scheduler, LoRAs and
cache), at which pixel size (:func:`scaled_size`), with which seeds (:func:`image_seeds`), with which pipeline
arguments (:func:`pipeline_call`) and what the result fields hold (:func:`result_fields`). Anything this engine
cannot honour is refused here, before anything is loaded or run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ... import _media, spec
from ...errors import UnsupportedByEngineError
from ...types import ImageInferenceRequest, ImageRef
from .caches import CachePlan, cache_plan
from .lora import LoraUse, lora_plan
from .schedulers import SchedulerChoice, local_scheduler
from .stack import ENGINE

__all__ = [
    "DEMO_SCALE",
    "PIXEL_MULTIPLE",
    "RunPlan",
    "image_seeds",
    "pipeline_call",
    "plan_request",
    "rendered_sizes",
    "result_fields",
    "scaled_size",
]

# Demo weights run at an eighth of the requested size: every supported size is a multiple of 128 pixels, so the
# eighth keeps the exact aspect ratio and stays a multiple of 16 (VAE x8 times the transformer's 2x2 patches).
DEMO_SCALE = 1 / 8
# Width and height must be multiples of this: the VAE downsamples by 8 and the transformer patches 2x2 latents.
PIXEL_MULTIPLE = 16


@dataclass(frozen=True)
class RunPlan:
    """Everything the engine decided about a request before loading or running anything.

    ``mode``: ``"text"`` (text to image), ``"edit"`` (instruction editing of ``referenceImages[0]`` with the I2I
    pipeline) or ``"img2img"`` (``seedImage`` + ``strength``: the text-to-image pipeline started part-way through its
    schedule from the noised seed image, SDEdit-style; ``start_step`` of ``steps`` is where it starts).
    """

    mode: str
    scheduler: SchedulerChoice
    loras: tuple[LoraUse, ...] = ()
    cache: CachePlan | None = None
    strength: float | None = None
    start_step: int = 0

    @property
    def kind(self) -> str:
        """The pipeline that runs it: ``"i2i"`` (the editing pipeline) or ``"t2i"``."""
        return "i2i" if self.mode == "edit" else "t2i"


def plan_request(request: ImageInferenceRequest) -> RunPlan:
    """Decide how to run a request, or raise UnsupportedByEngineError for anything this engine cannot honour."""
    if request.safety is not None and request.safety.checkContent:
        raise UnsupportedByEngineError(
            "safety.checkContent",
            True,
            ENGINE,
            "the local engine has no content checker, so it could not honestly report NSFWContent",
            "safety.checkContent=false, or the Runware engine for checked content",
        )
    choice = local_scheduler(request.scheduler)
    loras = tuple(lora_plan(request))
    cache = cache_plan(request)
    if request.referenceImages and request.seedImage is not None:
        raise UnsupportedByEngineError(
            "seedImage",
            "image",
            ENGINE,
            "the local engine either edits referenceImages (instruction editing) or starts from a seedImage, not both",
            "referenceImages alone (editing) or seedImage with strength alone (image to image)",
        )
    if request.referenceImages:
        if len(request.referenceImages) > 1:
            raise UnsupportedByEngineError(
                "referenceImages",
                f"{len(request.referenceImages)} images",
                ENGINE,
                "the Kandinsky 5 editing pipeline takes exactly one source image",
                "one reference image",
            )
        _require_image_data("referenceImages[0]", request.referenceImages[0])
        return RunPlan("edit", choice, loras, cache)
    if request.seedImage is not None:
        _require_image_data("seedImage", request.seedImage)
        if not choice.partial_schedule:
            raise UnsupportedByEngineError(
                "scheduler",
                choice.name,
                ENGINE,
                "image to image (seedImage) starts part-way through the schedule, which the multistep solvers do not "
                "support here (they size their orders from the whole schedule)",
                "'Euler' or 'Euler a' with seedImage",
            )
        steps = request.effective("steps")
        strength = float(request.effective("strength"))
        # Like diffusers' img2img pipelines: strength is the fraction of the schedule that runs.
        start_step = steps - int(steps * strength)
        return RunPlan("img2img", choice, loras, cache, strength=strength, start_step=start_step)
    return RunPlan("text", choice, loras, cache)


def _require_image_data(field_name: str, image: ImageRef) -> None:
    if image.kind in ("uuid", "url"):
        raise UnsupportedByEngineError(
            field_name,
            str(image.value),
            ENGINE,
            f"a {image.kind} names an image somewhere else; the local engine works offline and reads image data only",
            "a file path, bytes, a PIL image, a data URI or base64 data",
        )


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The pixel size actually rendered for a requested size at ``scale`` (multiples of 16, at least 16)."""

    def one(side: int) -> int:
        return max(PIXEL_MULTIPLE, round(side * scale / PIXEL_MULTIPLE) * PIXEL_MULTIPLE)

    return one(width), one(height)


def rendered_sizes(scale: float) -> list[tuple[int, int]]:
    """The ``(width, height)`` of every supported size at ``scale``, in the model page's order, without repeats."""
    return list(dict.fromkeys(scaled_size(size.width, size.height, scale) for size in spec.SIZES))


def image_seeds(seed: int | None, count: int) -> list[int]:
    """Seeds of the ``count`` images: ``seed, seed+1, ...``; with no seed one is drawn in the unsigned 32-bit range,
    as Runware does. Image i of a request therefore equals a single-image request with seed+i."""
    first = secrets.randbelow(spec.RANDOM_SEED_MAX + 1) if seed is None else seed
    # Wrap past the largest valid seed so every reported seed can be sent again.
    return [(first + i) % (spec.SEED_MAX + 1) for i in range(count)]


def pipeline_call(request: ImageInferenceRequest, scale: float) -> dict[str, Any]:
    """The keyword arguments every image of the request shares in its diffusers pipeline call."""
    width, height = scaled_size(request.width, request.height, scale)
    return {
        "prompt": request.positivePrompt,
        "negative_prompt": request.negativePrompt,
        "height": height,
        "width": width,
        "num_inference_steps": request.effective("steps"),
        "guidance_scale": float(request.effective("CFGScale")),
    }


def result_fields(output_type: str, output_format: str, data: bytes) -> dict[str, Any]:
    """The image fields of a result for ``outputType``. A local engine has no URL to give: URL output returns the
    bytes only (``GeneratedImage.data``)."""
    if output_type == "base64Data":
        return {"imageBase64Data": _media.base64_text(data)}
    if output_type == "dataURI":
        return {"imageDataURI": _media.data_uri(data, _media.OUTPUT_FORMATS[output_format])}
    return {}
