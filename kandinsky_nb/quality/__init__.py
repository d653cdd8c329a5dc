"""Image quality scorers: pure functions of pixels (numpy arrays), no run log, no I/O beyond reading weights.

Download-free: :class:`SSIM` and :class:`PSNR` against a reference image (scikit-image, the ``quality`` extra),
:class:`Sharpness` and :class:`Colourfulness` (numpy). With model weights (the ``local`` extra): :class:`CLIPScore`
and :class:`AestheticScore`. Scoring a sweep and caching the scores in the run log is
:func:`kandinsky_nb.analysis.scoring.score_sweep`; reading them is :mod:`kandinsky_nb.analysis.quality`.
"""

from .catalogue import SCORER_CLASSES, against, metric_label
from .images import as_rgb, grey
from .models import (
    AESTHETIC_CLIP,
    AESTHETIC_HEAD_URL,
    CLIP_SCORE_MODEL,
    RANDOM_WEIGHTS_MARKER,
    AestheticScore,
    CLIPScore,
    is_random_weights,
    mark_random_weights,
)
from .scorers import (
    DOWNLOAD_FREE,
    PSNR,
    SSIM,
    Against,
    Colourfulness,
    Scorer,
    Sharpness,
    download_free_scorers,
    scorer_named,
)

__all__ = [
    "AESTHETIC_CLIP",
    "AESTHETIC_HEAD_URL",
    "CLIP_SCORE_MODEL",
    "DOWNLOAD_FREE",
    "PSNR",
    "RANDOM_WEIGHTS_MARKER",
    "SCORER_CLASSES",
    "SSIM",
    "AestheticScore",
    "Against",
    "CLIPScore",
    "Colourfulness",
    "Scorer",
    "Sharpness",
    "against",
    "as_rgb",
    "download_free_scorers",
    "grey",
    "is_random_weights",
    "mark_random_weights",
    "metric_label",
    "scorer_named",
]
