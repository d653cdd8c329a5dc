"""A sweep's lease: one run of a sweep at a time, across processes, so no cell is generated twice.

Two processes running the same sweep name would each read the log, see the same cells to do, and send them all twice
(and each resume the other's in-flight cells). So a run holds the sweep's lease from before it reads the cells' states
until its last cell is logged; a second run of that name, in another process or in this one, is refused at once with
who holds it.

The lease is an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows, through the ``filelock`` package) on a
file in the run log's home, the way SQLite guards its own database. The operating system drops the lock when its
process dies, so a crashed or killed run leaves nothing stale to clean up: the next run takes the lease and resumes.
The lock file is never deleted (deleting it lets two processes lock two different files of one name); a small
``.holder.json`` beside it says which process holds it, for the refusal's message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import RunLogError, SweepBusyError

__all__ = ["SweepBusyError", "SweepLease"]


class SweepLease:
    """The lease of sweep ``name`` in the run log's ``home``. ``with lease:`` holds it or raises SweepBusyError."""

    def __init__(self, home: str | os.PathLike[str], name: str) -> None:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        folder = Path(home) / "leases"
        self.name = name
        self.path = folder / f"sweep-{digest}.lock"
        self.holder_path = folder / f"sweep-{digest}.holder.json"
        self._lock: Any = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds (or last held) the lease, as written by its holder; None if unknown."""
        try:
            return json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(self.path, timeout=0, thread_local=False, preserve_lock_file=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            raise SweepBusyError(self.name, self.holder()) from None
        except OSError as exc:
            raise RunLogError(
                f"cannot take the lease of sweep {self.name!r} in {self.path.parent} ({exc.strerror or exc}); "
                "give a run-log home you can write (home=, --home or KANDINSKY_NB_HOME)"
            ) from exc
        self._lock = lock
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}
        with contextlib.suppress(OSError):  # only the refusal's message reads it
            self.holder_path.write_text(json.dumps({"sweep": self.name, **holder}), encoding="utf-8")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def __enter__(self) -> SweepLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
