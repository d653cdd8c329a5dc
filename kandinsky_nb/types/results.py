"""What comes back: the wire result and error objects (tolerant of extra fields), and the engine-neutral
:class:`Generation` that every engine returns.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ..html import THUMBNAIL_SIDE, ImageInfo, html_from_generation
from .images import sniff_format

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .request import ImageInferenceRequest

__all__ = ["GeneratedImage", "Generation", "ImageInferenceResult", "WireError"]


class _Tolerant(BaseModel):
    """Tolerant output: unknown fields are kept (``model_extra``), types are coerced where lossless."""

    model_config = ConfigDict(extra="allow", frozen=True)


class ImageInferenceResult(_Tolerant):
    """One image of an ``imageInference`` response (one per ``numberResults``)."""

    taskType: str = "imageInference"
    taskUUID: str
    imageUUID: str | None = None
    imageURL: str | None = None
    imageBase64Data: str | None = None
    imageDataURI: str | None = None
    # Seeds can exceed 2**53: JSON integers are parsed as exact Python ints, never through float.
    seed: int | None = None
    NSFWContent: bool | None = None
    cost: float | None = None
    # Present on getResponse polls.
    status: str | None = None
    progress: float | None = None


class WireError(_Tolerant):
    """One item of the envelope's ``errors`` list (fields vary between providers; all optional)."""

    code: str | None = None
    message: str | None = None
    parameter: str | list[str] | None = None
    taskType: str | None = None
    taskUUID: str | None = None
    documentation: str | None = None
    type: str | None = None
    allowedValues: list[Any] | None = None
    status: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """One generated image: its wire result and its encoded bytes (in the request's outputFormat)."""

    result: ImageInferenceResult
    data: bytes

    @property
    def seed(self) -> int | None:
        return self.result.seed

    @property
    def cost(self) -> float | None:
        return self.result.cost

    @property
    def image_uuid(self) -> str | None:
        return self.result.imageUUID

    @property
    def format(self) -> str | None:
        return sniff_format(self.data)

    def to_pil(self) -> PILImage.Image:
        from PIL import Image

        return Image.open(io.BytesIO(self.data))

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        return f"GeneratedImage(imageUUID={self.image_uuid!r}, seed={self.seed!r}, cost={self.cost!r}, {len(self.data)} bytes {self.format})"


@dataclass
class Generation:
    """The outcome of one request on any engine.

    ``engine`` names where it ran (``"runware"``, ``"local"``); ``demo`` is True when the local engine ran on random
    demo weights (its images are noise). ``cost`` is the sum over images in USD (None when the engine did not
    report one). ``response`` holds the raw JSON items as received; ``details`` engine-specific facts (for example
    the local engine's measured GPU seconds and the scheduler it really used).
    """

    request: ImageInferenceRequest
    images: list[GeneratedImage]
    engine: str
    latency_s: float
    demo: bool = False
    response: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def task_uuid(self) -> str:
        return self.request.taskUUID

    @property
    def cost(self) -> float | None:
        costs = [image.cost for image in self.images if image.cost is not None]
        return sum(costs) if costs else None

    @property
    def seeds(self) -> list[int | None]:
        return [image.seed for image in self.images]

    def to_html(self, *, max_side: int = THUMBNAIL_SIDE, zoom_side: int | None = None, style: bool = True) -> str:
        """Thumbnails of the images with seed, cost and latency, and the request's summary line, as HTML.

        Built by :mod:`kandinsky_nb.html` (pure builders, no widget imports), so a Generation renders in a notebook
        without ipywidgets. ``zoom_side``: a click on a thumbnail opens the image at up to that many pixels a side.
        ``style=False`` leaves out the ``<style>`` block (a page that already has it).
        """
        request = self.request
        return html_from_generation(
            [ImageInfo(image.data, image.seed, image.cost) for image in self.images],
            engine=self.engine,
            prompt=request.positivePrompt,
            width=request.width,
            height=request.height,
            steps=int(request.effective("steps")),
            cfg_scale=float(request.effective("CFGScale")),
            latency_s=self.latency_s,
            total_cost=self.cost,
            demo=self.demo,
            max_side=max_side,
            zoom_side=zoom_side,
            style=style,
        )

    def _repr_html_(self) -> str:
        # A Generation at the end of a notebook cell shows its thumbnails.
        return self.to_html()

    def __repr__(self) -> str:
        demo = ", demo weights" if self.demo else ""
        return (
            f"Generation(engine={self.engine!r}{demo}, taskUUID={self.task_uuid!r}, images={len(self.images)}, "
            f"seeds={self.seeds}, cost={self.cost!r}, latency_s={self.latency_s:.3f})"
        )
