"""Every fact of the Kandinsky 5.0 Image Lite model page, in one place.

Source: Runware's model page for ``runware:kandinsky-5.0-image-lite@1`` (a copy lives in the project's shared
reference notes). Nothing else in the package repeats these numbers: the request model, the panels, the local engine
and the price estimate all read them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

MODEL_ID: Final = "runware:kandinsky-5.0-image-lite@1"
TASK_TYPE: Final = "imageInference"
MODEL_NAME: Final = "Kandinsky 5.0 Image Lite"
MODEL_PAGE_URL: Final = "https://runware.ai/docs/models/kandinsky-5-0-image-lite"
RUNWARE_BASE_URL: Final = "https://api.runware.ai"

# The real diffusers checkpoints that the local engine loads (text to image, and instruction editing).
LOCAL_T2I_CHECKPOINT: Final = "kandinskylab/Kandinsky-5.0-T2I-Lite-sft-Diffusers"
LOCAL_I2I_CHECKPOINT: Final = "kandinskylab/Kandinsky-5.0-I2I-Lite-sft-Diffusers"


@dataclass(frozen=True)
class Size:
    """One of the supported output sizes, with the label the model page gives it."""

    label: str
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


# "width and height must be used together" and only these combinations are accepted.
SIZES: Final[tuple[Size, ...]] = (
    Size("1K (1:1)", 1024, 1024),
    Size("1K (~9:20)", 640, 1408),
    Size("1K (~20:9)", 1408, 640),
    Size("1K (3:5)", 768, 1280),
    Size("1K (5:3)", 1280, 768),
    Size("1K (7:9)", 896, 1152),
    Size("1K (9:7)", 1152, 896),
)
DEFAULT_SIZE: Final = SIZES[0]
SIZE_STEP: Final = 16  # width and height are documented with "Step: 16"


def size_for(width: int, height: int) -> Size | None:
    """The supported size with these dimensions, or None."""
    for size in SIZES:
        if (size.width, size.height) == (width, height):
            return size
    return None


def size_by_label(label: str) -> Size:
    """Look a size up by its label (``"1K (5:3)"``) or by ``"1280x768"``."""
    for size in SIZES:
        if label in (size.label, str(size)):
            return size
    allowed = ", ".join(f"{s.label} = {s}" for s in SIZES)
    raise KeyError(f"unknown size {label!r}; supported sizes are {allowed}")


def nearest_size(width: float, height: float) -> Size:
    """The supported size closest to a requested one: same aspect ratio first, then the same pixel count."""

    def distance(size: Size) -> tuple[float, float]:
        aspect_gap = abs(math.log(size.aspect) - math.log(max(width, 1) / max(height, 1)))
        area_gap = abs(size.width * size.height - width * height)
        return (round(aspect_gap, 6), area_gap)

    return min(SIZES, key=distance)


@dataclass(frozen=True)
class Limit:
    """A documented numeric range. ``maximum=None`` means the page gives no upper bound."""

    minimum: float
    maximum: float | None = None
    step: float | None = None
    default: float | None = None
    integer: bool = True

    def describe(self) -> str:
        """Human words for the allowed range, as error messages and tooltips use them."""
        fmt = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        text = (
            f"from {fmt(self.minimum)} to {fmt(self.maximum)}"
            if self.maximum is not None
            else f"at least {fmt(self.minimum)}"
        )
        if self.step is not None and not self.integer:
            text += f" in steps of {self.step:g}"
        elif not self.integer:
            text += " (any number)"
        else:
            text += " (whole numbers)"
        return text

    def contains(self, value: float) -> bool:
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            return False
        return self.step is None or self.integer or on_step(value, self.step)


def on_step(value: float, step: float) -> bool:
    """Whether a float sits on a decimal grid such as 0.01, tolerating binary rounding (7.1 is fine)."""
    ratio = value / step
    return math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-6)


# Seeds: the page prints the maximum as 9223372036854776000, which is how JavaScript renders 2**63. The largest seed a
# 64-bit signed integer holds is 2**63 - 1, so that is the bound we enforce.
SEED_MAX: Final = 2**63 - 1
# "When not provided, a random seed is generated in the unsigned 32-bit range."
RANDOM_SEED_MAX: Final = 2**32 - 1

LIMITS: Final[dict[str, Limit]] = {
    # API options
    "outputQuality": Limit(20, 99, default=95),
    "ttl": Limit(60),
    "numberResults": Limit(1, 20, default=1),
    # Generation parameters
    "seed": Limit(0, SEED_MAX),
    "steps": Limit(10, 50, default=20),
    "CFGScale": Limit(2, 10, step=0.01, default=7, integer=False),
    # acceleratorOptions
    "acceleratorOptions.cacheEndStep": Limit(1),
    "acceleratorOptions.cacheEndStepPercentage": Limit(1, 100),
    "acceleratorOptions.cacheMaxConsecutiveSteps": Limit(1, 5, default=3),
    "acceleratorOptions.cacheStartStep": Limit(0),
    "acceleratorOptions.cacheStartStepPercentage": Limit(0, 99),
    "acceleratorOptions.fbCacheThreshold": Limit(0, 1, step=0.01, default=0.25, integer=False),
    "acceleratorOptions.teaCacheDistance": Limit(0, 1, step=0.01, default=0.5, integer=False),
    "acceleratorOptions.dbCacheThreshold": Limit(0, 1, step=0.01, default=0.25, integer=False),
    "acceleratorOptions.dbCacheSkipInterval": Limit(1, default=5),
    # lora[]
    "lora.weight": Limit(-4, 4, step=0.01, default=1, integer=False),
    # Image inputs (not in the page's parameter table; Runware's generic image API documents strength 0..1, 0.8).
    "strength": Limit(0, 1, step=0.01, default=0.8, integer=False),
}

# Text lengths, in characters.
TEXT_LIMITS: Final[dict[str, tuple[int, int]]] = {
    "positivePrompt": (2, 32000),
    "negativePrompt": (2, 3000),
}

# The twelve scheduler names the page allows. Whether each one is correct for this flow-matching model on a local
# engine is decided by the local backend; the cloud accepts all twelve.
SCHEDULERS: Final[tuple[str, ...]] = (
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DPM++ 2M SDE Exponential",
    "DPM++ 2M SDE Karras",
    "Euler",
    "Euler a",
    "Euler Trailing",
    "LCM",
    "DDIM",
    "DDPM",
    "PNDM",
    "UniPC",
)
# The page gives no scheduler default; the model's own pipeline ships flow-matching Euler.
MODEL_DEFAULT_SCHEDULER: Final = "Euler"

OUTPUT_TYPES: Final = ("URL", "base64Data", "dataURI")
OUTPUT_FORMATS: Final = ("JPG", "PNG", "WEBP")
DELIVERY_METHODS: Final = ("sync", "async")
SAFETY_MODES: Final = ("none", "fast")
LORA_TRANSFORMERS: Final = ("high", "low", "both")

# Image inputs: not in the page's parameter table (see types/request.py). IMAGE_FIELDS hold images (uploaded or
# sent as data); IMAGE_INPUT_PARAMETERS is the whole group, strength included, that only image-to-image uses.
IMAGE_FIELDS: Final = ("seedImage", "referenceImages")
IMAGE_INPUT_PARAMETERS: Final = ("seedImage", "strength", "referenceImages")

# Pixel limits (width x height) of decoded images, checked from the header before any pixel is decoded, so a
# decompression bomb (a few KB that inflate to gigabytes) is refused without the memory it asks for.
# Inputs: the model works at about 1 MP and scales inputs down; 36 MP covers a 6000x6000 photo. A 12000x12000 input
# (144 MP, 430 MB decoded) is refused before anything is sent.
MAX_INPUT_PIXELS: Final = 36_000_000
# Results: this model's largest output is 1408x640 (0.9 MP); 4096x4096 leaves room for servers that upscale.
MAX_RESULT_PIXELS: Final = 4096 * 4096
# Bytes read from a local file given as an image input: a 36 MP PNG is at most ~140 MB, a photo a tenth of that.
MAX_INPUT_BYTES: Final = 64 * 1024 * 1024

DEFAULTS: Final[dict[str, object]] = {
    "outputType": "URL",
    "outputFormat": "JPG",
    "outputQuality": 95,
    "deliveryMethod": "sync",
    "includeCost": False,
    "numberResults": 1,
    "steps": 20,
    "CFGScale": 7.0,
    "scheduler": MODEL_DEFAULT_SCHEDULER,
    "safety.checkContent": False,
    "safety.mode": "none",
    "lora.weight": 1.0,
    "lora.transformer": "both",
    "acceleratorOptions.fbCache": False,
    "acceleratorOptions.teaCache": False,
    "acceleratorOptions.dbCache": False,
    "strength": 0.8,
}

# The three cache families; the toolkit allows one at a time, each with its own tuning knobs.
CACHE_FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "fbCache": ("fbCacheThreshold",),
    "teaCache": ("teaCacheDistance",),
    "dbCache": ("dbCacheThreshold", "dbCacheSkipInterval"),
}

# Pricing. The page lists one figure: 1024x1024 costs $0.0077. It does not say at how many steps; Runware bills hosted
# open models by compute time, and the page's own examples (28 steps) cost 3.76e-4 USD per megapixel-step, which puts
# the list price at about 20 steps, the default. So the list price is read as "1024x1024 at the default 20 steps".
LIST_PRICE_USD: Final = 0.0077
LIST_PRICE_SIZE: Final = DEFAULT_SIZE
LIST_PRICE_STEPS: Final = 20


def list_price_estimate(width: int, height: int, steps: int | None = None, number_results: int = 1) -> float:
    """The list price scaled linearly by megapixels and steps, in USD, for ``number_results`` images."""
    steps = LIST_PRICE_STEPS if steps is None else steps
    per_megapixel_step = LIST_PRICE_USD / (LIST_PRICE_SIZE.megapixels * LIST_PRICE_STEPS)
    return per_megapixel_step * (width * height / 1_000_000) * steps * number_results
