"""What the server keeps between requests: tasks by taskUUID, images by imageUUID (until their ttl passes), and the
imageUUID of each uploaded image by content hash (the same bytes are stored once).

:class:`TaskStore` is the interface the rest of the server uses; :class:`MemoryTaskStore` keeps everything in this
process, which serves one replica. Replicas behind a load balancer need a shared store (Redis): another subclass with
the same methods, so any replica answers any task, image URL or uploaded image's UUID. The methods are coroutines
for that reason, though the in-memory store never waits.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .._media import mime_type, sniff_format
from ..errors import ConfigurationError
from ..protocol.envelope import PROCESSING
from ..protocol.server import TaskState

__all__ = ["MemoryTaskStore", "StoredImage", "TaskStore"]


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    expires: float  # a time.time() value

    @property
    def mime(self) -> str:
        return mime_type(sniff_format(self.data))


class TaskStore(ABC):
    """Tasks, images and uploads, shared by every request (and, in a shared store, by every replica)."""

    #: seconds a finished task can still be fetched with getResponse
    task_retention: float = 24 * 3600

    @abstractmethod
    async def claim_task(self, task: TaskState) -> bool:
        """Keep a new task, unless a task with its taskUUID is already known and has not failed (then False: the
        caller answers ``conflictTaskUUID``). One step, so two replicas never both start the same task."""

    @abstractmethod
    async def save_task(self, task: TaskState) -> None:
        """Keep a task's new state (finished, with its items or errors); a finished task is stamped with the time
        (``finished``) its retention counts from."""

    @abstractmethod
    async def get_task(self, task_uuid: str) -> TaskState | None: ...

    @abstractmethod
    async def count_tasks(self) -> int: ...

    @abstractmethod
    async def save_image(self, image_uuid: str, data: bytes, *, ttl: float) -> None: ...

    @abstractmethod
    async def get_image(self, image_uuid: str) -> StoredImage | None:
        """The image, or None when there is none or its ttl has passed."""

    @abstractmethod
    async def uploaded_image(self, content_hash: str) -> str | None:
        """The imageUUID the bytes with this hash were uploaded under, if they were."""

    @abstractmethod
    async def remember_upload(self, content_hash: str, image_uuid: str) -> None: ...

    @abstractmethod
    async def prune(self) -> None:
        """Forget finished tasks past their retention and images past their ttl."""


class MemoryTaskStore(TaskStore):
    """Everything in this process's memory: tasks for ``task_retention`` seconds after they finish, at most
    ``max_images`` images (the oldest go first), each until its ttl. ``clock`` is ``time.time`` (tests pass their
    own)."""

    def __init__(
        self,
        *,
        task_retention: float = 24 * 3600,
        max_images: int = 2000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if task_retention <= 0 or max_images < 1:
            raise ConfigurationError(
                f"MemoryTaskStore(task_retention={task_retention!r}, max_images={max_images!r}) is invalid: both "
                "must be positive (seconds a finished task is kept; images kept at most). Pass positive numbers."
            )
        self.task_retention = task_retention
        self.max_images = max_images
        self._clock = clock
        self._tasks: dict[str, TaskState] = {}
        self._images: OrderedDict[str, StoredImage] = OrderedDict()
        self._uploads: dict[str, str] = {}

    async def claim_task(self, task: TaskState) -> bool:
        known = self._tasks.get(task.task_uuid)
        if known is not None and known.status != "error":
            return False
        self._tasks[task.task_uuid] = task
        return True

    async def save_task(self, task: TaskState) -> None:
        if task.status != PROCESSING and task.finished is None:
            task.finished = self._clock()
        self._tasks[task.task_uuid] = task

    async def get_task(self, task_uuid: str) -> TaskState | None:
        return self._tasks.get(task_uuid)

    async def count_tasks(self) -> int:
        return len(self._tasks)

    async def save_image(self, image_uuid: str, data: bytes, *, ttl: float) -> None:
        self._images[image_uuid] = StoredImage(data, self._clock() + ttl)
        while len(self._images) > self.max_images:
            self._images.popitem(last=False)

    async def get_image(self, image_uuid: str) -> StoredImage | None:
        stored = self._images.get(image_uuid)
        if stored is not None and stored.expires < self._clock():
            del self._images[image_uuid]
            return None
        return stored

    async def uploaded_image(self, content_hash: str) -> str | None:
        return self._uploads.get(content_hash)

    async def remember_upload(self, content_hash: str, image_uuid: str) -> None:
        self._uploads[content_hash] = image_uuid

    async def prune(self) -> None:
        now = self._clock()
        for key in [
            k for k, task in self._tasks.items() if task.finished and now - task.finished > self.task_retention
        ]:
            del self._tasks[key]
        for key in [k for k, image in self._images.items() if image.expires < now]:
            del self._images[key]
        for key in [k for k, image_uuid in self._uploads.items() if image_uuid not in self._images]:
            del self._uploads[key]
