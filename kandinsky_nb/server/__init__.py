"""``kandinsky-nb serve``: a Runware-compatible REST server in front of any engine (needs the ``server`` extra).

* :mod:`.routes`    the Starlette app: HTTP in, calls to the runner, envelopes out
* :mod:`.runner`    the tasks of one POST carried out on the engine (:class:`ServerState`)
* :mod:`.store`     tasks, images and uploads behind :class:`TaskStore` (in memory: :class:`MemoryTaskStore`)
* :mod:`.delivery`  results sent to ``webhookURL`` / ``uploadEndpoint``, retried with backoff
* :mod:`.binding`   where an open server may listen; :mod:`._thread` runs one on a background thread

The wire format itself (parsing, error objects, envelopes, getResponse) is :mod:`kandinsky_nb.protocol.server`.
"""

from ._thread import ServerThread
from .binding import check_bind, is_loopback
from .delivery import Delivery
from .routes import create_app
from .runner import ServerState
from .store import MemoryTaskStore, StoredImage, TaskStore

__all__ = [
    "Delivery",
    "MemoryTaskStore",
    "ServerState",
    "ServerThread",
    "StoredImage",
    "TaskStore",
    "check_bind",
    "create_app",
    "is_loopback",
]
