"""Small JPEG thumbnails of run images, made with Pillow and kept in memory (never written next to the log).

Image files in the log are content-addressed and never change, so a thumbnail keyed by the file's path, size on disk
and modification time stays valid for as long as it is cached; an LRU bound on total bytes keeps memory flat when a
researcher scrolls through thousands of runs.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

from .._media import mime_type

__all__ = ["THUMBNAIL_MIME", "ThumbnailCache"]

THUMBNAIL_MIME = mime_type("jpeg")


class ThumbnailCache:
    """``get(path, size)`` -> JPEG bytes no larger than ``size`` x ``size``, cached up to ``max_bytes`` in all."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024, quality: int = 80) -> None:
        self.max_bytes = max_bytes
        self.quality = quality
        self._items: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # handlers call get() from a thread pool
        self.hits = 0
        self.misses = 0

    def get(self, path: Path, size: int) -> bytes:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, size)
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return data
        data = self._render(path, size)
        with self._lock:
            self.misses += 1
            if key not in self._items and len(data) <= self.max_bytes:
                self._items[key] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes:
                    _, evicted = self._items.popitem(last=False)
                    self._bytes -= len(evicted)
        return data

    def _render(self, path: Path, size: int) -> bytes:
        from PIL import Image

        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG sources decode at a reduced scale: much faster
            thumbnail = image.convert("RGB")
        thumbnail.thumbnail((size, size))
        out = io.BytesIO()
        thumbnail.save(out, format="JPEG", quality=self.quality)
        return out.getvalue()

    def __len__(self) -> int:
        return len(self._items)
