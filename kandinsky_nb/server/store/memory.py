"""Tasks, images and uploads in this process's memory: the embedded default, for one replica.

Everything is bounded, so a server that runs for months on uploads keeps a flat footprint:

* finished tasks for ``task_retention`` seconds, and at most ``max_tasks`` of them holding at most
  ``max_task_bytes`` of result items (a task asked for base64Data holds its images inline); the oldest finished go
  first, and getResponse then answers ``taskNotFound`` for them;
* images until their ttl, and at most ``max_image_bytes`` (and ``max_images``) in all: past the cap the least
  recently used go first. An image that was evicted or expired is remembered by UUID (the last
  ``_GONE_REMEMBERED``), so the error that refuses it says what happened and what to do.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable

from ...errors import ConfigurationError
from ...protocol.envelope import PROCESSING
from ...protocol.server import TaskState
from .base import StoredImage, TaskStore

__all__ = ["DEFAULT_MAX_IMAGE_BYTES", "DEFAULT_MAX_TASK_BYTES", "MemoryTaskStore"]

DEFAULT_MAX_IMAGE_BYTES = 512 * 1024 * 1024  # about 250 full-size 1408x640 PNGs, or thousands of uploads
DEFAULT_MAX_TASK_BYTES = 256 * 1024 * 1024  # finished tasks' result items (inline images count)
_GONE_REMEMBERED = 4096  # UUIDs of evicted/expired images kept for their error message (~1 MB)


class MemoryTaskStore(TaskStore):
    """Everything in this process's memory, bounded as the module says. ``clock`` is ``time.time`` (tests pass
    their own)."""

    def __init__(
        self,
        *,
        task_retention: float = 24 * 3600,
        max_tasks: int = 100_000,
        max_task_bytes: int = DEFAULT_MAX_TASK_BYTES,
        max_images: int = 100_000,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        limits = {
            "task_retention": task_retention,
            "max_tasks": max_tasks,
            "max_task_bytes": max_task_bytes,
            "max_images": max_images,
            "max_image_bytes": max_image_bytes,
        }
        bad = {name: value for name, value in limits.items() if not value > 0}
        if bad:
            given = ", ".join(f"{name}={value!r}" for name, value in bad.items())
            raise ConfigurationError(
                f"MemoryTaskStore({given}) is invalid: task_retention is seconds a finished task is kept, max_tasks "
                "and max_images are counts, max_task_bytes and max_image_bytes the memory results and images may "
                "take; each must be above 0. "
                "Pass positive numbers."
            )
        self.task_retention = task_retention
        self.max_tasks = max_tasks
        self.max_task_bytes = max_task_bytes
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        self._clock = clock
        self._tasks: dict[str, TaskState] = {}
        self._finished: OrderedDict[str, int] = OrderedDict()  # taskUUID -> its size, oldest finished first
        self._task_bytes = 0
        self._images: OrderedDict[str, StoredImage] = OrderedDict()  # least recently used first
        self._image_bytes = 0
        self._expiries: list[tuple[float, str]] = []  # a heap; entries of replaced or evicted images are stale
        self._uploads: dict[str, str] = {}  # content hash -> imageUUID
        self._upload_of: dict[str, str] = {}  # imageUUID -> content hash, to forget the upload with its image
        # imageUUID -> why it is gone ("evicted" or "expired") and when: the sentence is written only when asked for
        self._gone: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"MemoryTaskStore(max_image_bytes={self.max_image_bytes}, max_images={self.max_images}, "
            f"max_tasks={self.max_tasks}, task_retention={self.task_retention:g})"
        )

    @property
    def image_bytes(self) -> int:
        """Bytes of image data held now."""
        return self._image_bytes

    # -- tasks --------------------------------------------------------------------------------------------------------
    async def claim_task(self, task: TaskState) -> bool:
        known = self._tasks.get(task.task_uuid)
        if known is not None and known.status != "error":
            return False
        self._task_bytes -= self._finished.pop(task.task_uuid, 0)
        self._tasks[task.task_uuid] = task
        return True

    async def save_task(self, task: TaskState) -> None:
        if task.status != PROCESSING and task.finished is None:
            task.finished = self._clock()
        self._tasks[task.task_uuid] = task
        if task.finished is not None:
            self._task_bytes -= self._finished.pop(task.task_uuid, 0)
            size = _size(task)
            self._finished[task.task_uuid] = size
            self._task_bytes += size
            while len(self._finished) > 1 and (
                len(self._finished) > self.max_tasks or self._task_bytes > self.max_task_bytes
            ):
                oldest, oldest_size = self._finished.popitem(last=False)
                self._task_bytes -= oldest_size
                del self._tasks[oldest]

    async def get_task(self, task_uuid: str) -> TaskState | None:
        return self._tasks.get(task_uuid)

    async def count_tasks(self) -> int:
        return len(self._tasks)

    # -- images -------------------------------------------------------------------------------------------------------
    async def save_image(self, image_uuid: str, data: bytes, *, ttl: float) -> None:
        if image_uuid in self._images:
            self._drop(image_uuid, why=None)
        expires = self._clock() + ttl
        self._images[image_uuid] = StoredImage(data, expires)
        self._image_bytes += len(data)
        self._gone.pop(image_uuid, None)
        heapq.heappush(self._expiries, (expires, image_uuid))
        # Least recently used first; the newest image stays even when it alone passes the cap.
        while len(self._images) > 1 and (
            self._image_bytes > self.max_image_bytes or len(self._images) > self.max_images
        ):
            self._drop(next(iter(self._images)), why=("evicted", self._clock()))

    async def get_image(self, image_uuid: str) -> StoredImage | None:
        stored = self._images.get(image_uuid)
        if stored is None:
            return None
        if stored.expires < self._clock():
            self._drop(image_uuid, why=("expired", stored.expires))
            return None
        self._images.move_to_end(image_uuid)  # used: the last to be evicted
        return stored

    async def why_missing(self, image_uuid: str) -> str:
        gone = self._gone.get(image_uuid)
        if gone is None:
            return ""
        kind, when = gone
        return self._evicted_note(image_uuid) if kind == "evicted" else self._expired_note(image_uuid, when)

    async def uploaded_image(self, content_hash: str) -> str | None:
        return self._uploads.get(content_hash)

    async def remember_upload(self, content_hash: str, image_uuid: str) -> None:
        if image_uuid not in self._images:
            return  # already evicted (an upload larger than the cap): nothing to point at
        self._uploads[content_hash] = image_uuid
        self._upload_of[image_uuid] = content_hash

    async def prune(self) -> None:
        """Forget what has expired: O(what expired), so it can run on every request."""
        now = self._clock()
        while self._finished:
            task_uuid = next(iter(self._finished))
            finished = self._tasks[task_uuid].finished
            if finished is not None and now - finished <= self.task_retention:
                break
            self._task_bytes -= self._finished.pop(task_uuid)
            del self._tasks[task_uuid]
        while self._expiries and self._expiries[0][0] < now:
            expires, image_uuid = heapq.heappop(self._expiries)
            stored = self._images.get(image_uuid)
            if stored is not None and stored.expires == expires:  # not a stale entry of a replaced image
                self._drop(image_uuid, why=("expired", expires))
        if len(self._expiries) > 2 * len(self._images) + 64:  # stale entries pile up under eviction: rebuild
            self._expiries = [(image.expires, key) for key, image in self._images.items()]
            heapq.heapify(self._expiries)

    # -- internals ----------------------------------------------------------------------------------------------------
    def _drop(self, image_uuid: str, *, why: tuple[str, float] | None) -> None:
        stored = self._images.pop(image_uuid)
        self._image_bytes -= len(stored.data)
        content_hash = self._upload_of.pop(image_uuid, None)
        if content_hash is not None and self._uploads.get(content_hash) == image_uuid:
            del self._uploads[content_hash]
        if why:
            self._gone[image_uuid] = why
            while len(self._gone) > _GONE_REMEMBERED:
                self._gone.popitem(last=False)

    def _evicted_note(self, image_uuid: str) -> str:
        cap = self.max_image_bytes
        size = f"{cap / 2**20:g} MiB" if cap >= 2**20 else f"{cap} bytes"
        return (
            f"Image {image_uuid} was evicted: this server keeps at most {size} (and {self.max_images} images) "
            "of images in memory and drops the least recently used first. Upload it again (imageUpload) or run its "
            "task again; the operator can raise the cap (kandinsky-nb serve --max-image-mb) or share a larger store "
            "(--store redis://...)."
        )

    def _expired_note(self, image_uuid: str, expires: float) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
        return f"Image {image_uuid} expired at {when} (its ttl passed). Upload it again or run its task again."


def _size(task: TaskState) -> int:
    """About how many bytes a finished task holds: its item and error texts (inline images dominate) plus the
    objects around them (measured with tracemalloc: ~1 KB for a task with one URL item). An estimate for the cap."""
    texts = sum(len(value) for item in task.items for value in item.values() if isinstance(value, str))
    return 1024 + texts + sum(len(error.message or "") for error in task.errors)
