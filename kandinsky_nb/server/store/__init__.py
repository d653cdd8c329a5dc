"""What the server keeps between requests, behind one interface (:class:`TaskStore`):

* :mod:`.memory`       :class:`MemoryTaskStore`, this process's memory, bounded by bytes and counts (the default);
* :mod:`.redis_store`  :class:`RedisTaskStore`, a Redis shared by every replica behind a load balancer.

:func:`open_store` picks one from a URL, as ``kandinsky-nb serve --store`` does.
"""

from __future__ import annotations

from ...errors import ConfigurationError
from .base import StoredImage, TaskStore
from .memory import DEFAULT_MAX_IMAGE_BYTES, MemoryTaskStore
from .redis_store import RedisTaskStore

__all__ = ["DEFAULT_MAX_IMAGE_BYTES", "MemoryTaskStore", "RedisTaskStore", "StoredImage", "TaskStore", "open_store"]


def open_store(url: str | None = None, *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> TaskStore:
    """``None`` or ``"memory"``: a :class:`MemoryTaskStore` holding at most ``max_image_bytes`` of images;
    ``redis://...`` (``rediss://``, ``unix://``): a :class:`RedisTaskStore` shared by replicas."""
    if url is None or url == "memory":
        return MemoryTaskStore(max_image_bytes=max_image_bytes)
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return RedisTaskStore(url)
    raise ConfigurationError(
        f"store {url.split('@')[-1]!r} is not one this server knows: pass 'memory' (this process, the default) or a "
        "Redis URL such as redis://127.0.0.1:6379/0 (shared by every replica)."
    )
