"""What each metric is, by name: what it is computed against and how its values read (one table for every scorer)."""

from __future__ import annotations

from .models import AestheticScore, CLIPScore
from .scorers import PSNR, SSIM, Against, Colourfulness, Scorer, Sharpness

__all__ = ["SCORER_CLASSES", "against", "metric_label"]

SCORER_CLASSES: dict[str, type[Scorer]] = {
    cls.metric: cls for cls in (SSIM, PSNR, Sharpness, Colourfulness, CLIPScore, AestheticScore)
}


def against(metric: str) -> Against:
    """``"reference"``, ``"prompt"`` or ``"nothing"``: what a metric is computed against (``"nothing"`` for a metric
    this toolkit does not know, such as one stored by your own code)."""
    cls = SCORER_CLASSES.get(metric)
    return cls.against if cls is not None else "nothing"


def metric_label(metric: str) -> str:
    """How a value of the metric reads after its number: ``"SSIM"``, ``"dB PSNR"``, ``"CLIP score"``..."""
    cls = SCORER_CLASSES.get(metric)
    return cls.label if cls is not None and cls.label else metric
