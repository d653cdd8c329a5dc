"""Scorers that need no download: convergence to a reference image (SSIM, PSNR) and two no-reference statistics
(sharpness, colourfulness).

A scorer is a small object: ``metric`` (the name its scores are stored under), ``against`` (what a score is computed
against: ``"reference"`` image, ``"prompt"`` text or ``"nothing"``), ``version`` (stored with every score; a changed
computation gets a new version, so old and new values never mix) and ``score(image, reference=..., prompt=...)``.
Images are RGB ``uint8`` arrays (:func:`kandinsky_nb.quality.as_rgb` makes them from bytes, files or PIL images).
Every score is "higher is better" or "higher is closer", so one frontier rule fits them all.

SSIM and PSNR use scikit-image (the ``quality`` extra); sharpness and colourfulness are a few lines of numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..errors import ConfigurationError, MissingDependencyError
from .images import grey

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DOWNLOAD_FREE",
    "PSNR",
    "SSIM",
    "Against",
    "Colourfulness",
    "Scorer",
    "Sharpness",
    "download_free_scorers",
    "scorer_named",
]

Against = Literal["nothing", "reference", "prompt"]


class Scorer:
    """One metric of an image. Subclasses set ``metric``, ``against``, ``version`` and implement :meth:`score`;
    model-backed scorers also override :meth:`score_many` (one batched forward pass) and :meth:`close`."""

    metric: ClassVar[str]
    against: ClassVar[Against] = "nothing"
    label: ClassVar[str] = ""  # how a value reads in a sentence, e.g. "0.97 SSIM"
    version: str = "1"
    # True for model scorers on random weights (the tests' tiny CLIP): their scores are noise and say so.
    random_weights: bool = False

    def score(
        self, image: np.ndarray, *, reference: np.ndarray | None = None, prompt: str | None = None
    ) -> float | None:
        raise NotImplementedError

    def score_many(
        self,
        images: Sequence[np.ndarray],
        *,
        references: Sequence[np.ndarray | None] | None = None,
        prompts: Sequence[str | None] | None = None,
    ) -> list[float | None]:
        """Scores of several images (each with its own reference or prompt); one at a time unless overridden."""
        references = references if references is not None else [None] * len(images)
        prompts = prompts if prompts is not None else [None] * len(images)
        return [
            self.score(image, reference=reference, prompt=prompt)
            for image, reference, prompt in zip(images, references, prompts, strict=True)
        ]

    def close(self) -> None:
        """Free what the scorer holds (model weights); pure scorers hold nothing."""

    def __repr__(self) -> str:
        noise = ", random weights: scores are noise" if self.random_weights else ""
        return f"{type(self).__name__}(metric={self.metric!r}, version={self.version!r}{noise})"


def _same_shape(image: np.ndarray, reference: np.ndarray | None, metric: str) -> np.ndarray:
    if reference is None:
        raise ConfigurationError(
            f"reference=None: {metric} compares an image with a reference image; pass reference= (the same seed and "
            "prompt at the sweep's most expensive setting, which score_sweep picks for you)"
        )
    if reference.shape != image.shape:
        raise ConfigurationError(
            f"reference shape={reference.shape}: {metric} needs the image's shape {image.shape}; compare images of one "
            "size (score_sweep groups a sweep's cells by size before it picks references)"
        )
    return reference


def _skimage_metrics(feature: str) -> Any:
    try:
        from skimage import metrics
    except ImportError as exc:
        raise MissingDependencyError(feature, "quality", exc.name) from exc
    return metrics


class SSIM(Scorer):
    """Structural similarity to the reference image (scikit-image, RGB, 7x7 window): 1.0 is the same picture."""

    metric = "ssim"
    against = "reference"
    label = "SSIM"
    version = "1"

    def __init__(self) -> None:
        self._metrics = _skimage_metrics("SSIM scoring")

    def score(
        self, image: np.ndarray, *, reference: np.ndarray | None = None, prompt: str | None = None
    ) -> float | None:
        reference = _same_shape(image, reference, self.metric)
        if min(image.shape[:2]) < 7:  # smaller than SSIM's window: no structure to compare
            return None
        return float(self._metrics.structural_similarity(reference, image, channel_axis=2, data_range=255))


class PSNR(Scorer):
    """Peak signal-to-noise ratio against the reference image, in dB (scikit-image); identical images give +inf."""

    metric = "psnr"
    against = "reference"
    label = "dB PSNR"
    version = "1"

    def __init__(self) -> None:
        self._metrics = _skimage_metrics("PSNR scoring")

    def score(
        self, image: np.ndarray, *, reference: np.ndarray | None = None, prompt: str | None = None
    ) -> float | None:
        import numpy as np

        reference = _same_shape(image, reference, self.metric)
        if np.array_equal(image, reference):
            return math.inf  # the reference itself (skimage would divide by a zero error and warn)
        return float(self._metrics.peak_signal_noise_ratio(reference, image, data_range=255))


class Sharpness(Scorer):
    """Variance of the Laplacian of the luma (0..255 scale, 4-neighbour kernel, valid pixels only): the usual focus
    measure; flat or blurred images score low, detailed ones (and noise) high."""

    metric = "sharpness"
    label = "sharpness"
    version = "1"

    def score(
        self, image: np.ndarray, *, reference: np.ndarray | None = None, prompt: str | None = None
    ) -> float | None:
        if min(image.shape[:2]) < 3:
            return None
        luma = grey(image)
        # The 4-neighbour Laplacian by slicing: no border padding, so an image's edges add nothing.
        laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
        return float(laplacian.var(dtype="float64"))


class Colourfulness(Scorer):
    """Hasler & Süsstrunk's colourfulness (2003): ``sigma_rgyb + 0.3 * mu_rgyb`` over the opponent channels
    ``rg = R - G`` and ``yb = (R + G) / 2 - B``. 0 is grey; about 33 "fairly", 59 "highly", 82+ "extremely"
    colourful on their scale."""

    metric = "colourfulness"
    label = "colourfulness"
    version = "1"

    def score(
        self, image: np.ndarray, *, reference: np.ndarray | None = None, prompt: str | None = None
    ) -> float | None:
        import numpy as np

        red, green, blue = (image[:, :, channel].astype(np.float32) for channel in range(3))
        rg = red - green
        yb = 0.5 * (red + green) - blue
        spread = math.hypot(float(rg.std(dtype="float64")), float(yb.std(dtype="float64")))
        mean = math.hypot(float(rg.mean(dtype="float64")), float(yb.mean(dtype="float64")))
        return spread + 0.3 * mean


# The scorers any machine can run (no weights to download), by metric name.
_DOWNLOAD_FREE: dict[str, type[Scorer]] = {cls.metric: cls for cls in (SSIM, PSNR, Sharpness, Colourfulness)}
DOWNLOAD_FREE: tuple[str, ...] = tuple(_DOWNLOAD_FREE)


def scorer_named(name: str) -> Scorer:
    """A download-free scorer by metric name (``ssim``, ``psnr``, ``sharpness``, ``colourfulness``)."""
    try:
        return _DOWNLOAD_FREE[name.strip().lower()]()
    except KeyError:
        raise ConfigurationError(
            f"scorer={name!r}: not a download-free scorer; use one of {', '.join(DOWNLOAD_FREE)}, or build a model "
            "scorer (kandinsky_nb.quality.CLIPScore, AestheticScore) with its weights"
        ) from None


def download_free_scorers() -> list[Scorer]:
    """One of each download-free scorer (SSIM, PSNR, sharpness, colourfulness)."""
    return [cls() for cls in _DOWNLOAD_FREE.values()]
