"""The interface every task store keeps: tasks by taskUUID, images by imageUUID (until their ttl passes), and the
imageUUID of each uploaded image by content hash (the same bytes are stored once).

The methods are coroutines because a shared store (Redis) waits on the network; the in-memory store never does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..._media import mime_type, sniff_format
from ...protocol.server import TaskState

__all__ = ["StoredImage", "TaskStore"]


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

    async def why_missing(self, image_uuid: str) -> str:
        """Why :meth:`get_image` has no image under this UUID, as a sentence for the error that names it, or ""
        when the store cannot tell (the error's generic wording stands). Stores that remember what they evicted say
        so."""
        return ""

    async def aclose(self) -> None:  # noqa: B027  (a default, not an abstract method: most stores hold nothing)
        """Let go of connections (a shared store); the in-memory store holds none."""
