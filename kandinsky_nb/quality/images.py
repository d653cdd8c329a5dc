"""Images as the scorers see them: RGB ``uint8`` arrays of shape (height, width, 3).

Scorers take arrays, not files, so they stay pure; this module is the one place that turns what the run log holds
(encoded bytes, a file path, a PIL image) into such an array.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ImageLike", "as_rgb", "grey"]

ImageLike = Any  # bytes | str | os.PathLike | PIL.Image.Image | numpy.ndarray (kept loose: PIL and numpy load lazily)


def as_rgb(image: ImageLike) -> np.ndarray:
    """``image`` (encoded bytes, a file path, a PIL image or an array) as an RGB ``uint8`` array (H, W, 3).

    A greyscale array is repeated into three channels and an alpha channel is dropped, so every scorer sees one
    layout. Arrays of another dtype must already hold 0..255 values (they are rounded, not rescaled)."""
    import numpy as np

    if isinstance(image, np.ndarray):
        array = image
    else:
        from PIL import Image

        if isinstance(image, Image.Image):
            array = np.asarray(image.convert("RGB"))
        elif isinstance(image, bytes | bytearray | memoryview | str | os.PathLike):
            source = io.BytesIO(image) if isinstance(image, bytes | bytearray | memoryview) else image
            with Image.open(source) as opened:
                array = np.asarray(opened.convert("RGB"))
        else:
            raise ConfigurationError(
                f"image={type(image).__name__}: cannot be scored; give encoded image bytes, a file path, a PIL image "
                "or an RGB uint8 numpy array of shape (height, width, 3)"
            )
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ConfigurationError(
            f"image shape={array.shape}: not an image; give an array of shape (height, width, 3) (RGB) or "
            "(height, width) (greyscale)"
        )
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return array


def grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601 weights, as OpenCV's ``COLOR_RGB2GRAY``) as float32 on the 0..255 scale."""
    import numpy as np

    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return rgb.astype(np.float32) @ weights
