"""Thumbnails made once per image content, kept next to the images.

A page of the Gallery would otherwise decode every full-size image to shrink it (a 1024x1024 PNG takes about 16 ms,
and a PNG cannot be decoded part way), each time it opens. Images are stored by content (``images/ab/<sha256>.<ext>``,
see :mod:`kandinsky_nb.runlog.files`), so a thumbnail is keyed by the same hash and the tile size:
``thumbs/<side>/ab/<sha256>.<ext>`` beside the ``images`` folder. It is made lazily, the first time a tile shows the
image, and written through a temporary name and a rename, so two kernels opening the same Gallery never read half a
file. The shrinking itself is :func:`kandinsky_nb.html.thumbnail` (one home for how thumbnails look).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .._media import extension, sniff_format
from ..html import thumbnail
from .files import write_atomically

__all__ = ["THUMBS_DIRNAME", "cached_thumbnail", "thumbnail_path", "thumbs_dir_for"]

THUMBS_DIRNAME = "thumbs"
_IMAGES_DIRNAME = "images"  # the run log's image folder (RunLog.images_dir); thumbs sit beside it
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The formats html.thumbnail writes; a cached thumbnail is looked up under each one's extension.
_THUMB_FORMATS = ("jpeg", "png")


def thumbs_dir_for(image_path: str | os.PathLike[str]) -> Path | None:
    """The thumbnail folder for an image stored in a run log's ``images/ab/<file>`` layout, or None for an image
    kept anywhere else (its thumbnail is then made each time, never written into a folder the log does not own)."""
    images_dir = Path(image_path).parent.parent
    return images_dir.parent / THUMBS_DIRNAME if images_dir.name == _IMAGES_DIRNAME else None


def thumbnail_path(thumbs_dir: Path, sha256: str, max_side: int, fmt: str) -> Path:
    """Where the ``max_side`` thumbnail of the image whose content hashes to ``sha256`` is kept, in format ``fmt``."""
    return thumbs_dir / str(max_side) / sha256[:2] / f"{sha256}.{extension(fmt)}"


def cached_thumbnail(
    image_path: str | os.PathLike[str],
    sha256: str | None,
    max_side: int,
    thumbs_dir: Path | None = None,
) -> tuple[bytes, str]:
    """The thumbnail of an image file (aspect kept, at most ``max_side`` pixels a side) and its format.

    Read from the cache when it is there (the full image is not opened); otherwise made from the image and written
    to the cache. ``thumbs_dir`` defaults to :func:`thumbs_dir_for` the image. Without a well-formed ``sha256``
    (a hand-made DataFrame) or a cache folder, the thumbnail is made and not kept. A cache that cannot be written
    (a read-only folder, a full disk) only costs speed: the thumbnail is still returned.

    Raises what reading or decoding the image raises (``OSError``, Pillow's ``UnidentifiedImageError``, ...):
    whether an unreadable image is an error is the caller's call.
    """
    folder = thumbs_dir if thumbs_dir is not None else thumbs_dir_for(image_path)
    key = sha256 if isinstance(sha256, str) and _SHA256.fullmatch(sha256) else None
    if folder is None or key is None:
        return thumbnail(Path(image_path).read_bytes(), max_side)
    for fmt in _THUMB_FORMATS:
        try:
            data = thumbnail_path(folder, key, max_side, fmt).read_bytes()
        except OSError:
            continue
        if sniff_format(data) == fmt:  # a foreign or damaged file under that name is remade, not shown
            return data, fmt
    data, fmt = thumbnail(Path(image_path).read_bytes(), max_side)
    with contextlib.suppress(OSError):  # a cache we cannot write is a slower Gallery, not a broken one
        write_atomically(thumbnail_path(folder, key, max_side, fmt), data)
    return data, fmt
