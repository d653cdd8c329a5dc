"""``kandinsky-nb serve``: a Runware-compatible REST server in front of any engine (needs the ``server`` extra).

* :mod:`.routes`    the Starlette app: HTTP in, calls to the runner, envelopes out
* :mod:`.runner`    the tasks of one POST carried out on the engine (:class:`ServerState`)
* :mod:`.store`     tasks, images and uploads behind :class:`TaskStore`: :class:`MemoryTaskStore` (bounded, this
  process) or :class:`RedisTaskStore` (shared by replicas); :func:`open_store` picks one from a URL
* :mod:`.delivery`  results sent to ``webhookURL`` / ``uploadEndpoint`` (listed hosts only), retried with backoff
* :mod:`.guard`     what is refused before a request costs anything: cross-site browsers, foreign Host headers on
  an open server, bodies over the limit while they are read; faults answered with an incident id
* :mod:`.outbound`  calls made on a client's word only to hosts the operator listed (:class:`HostAllowList`), to
  checked, pinned addresses
* :mod:`.binding`   where an open server may listen; :mod:`._thread` runs one on a background thread

The wire format itself (parsing, error objects, envelopes, getResponse) is :mod:`kandinsky_nb.protocol.server`.
"""

from ._thread import ServerThread
from .binding import check_bind, is_loopback
from .delivery import Delivery
from .outbound import HostAllowList
from .routes import create_app
from .runner import ServerState
from .store import MemoryTaskStore, RedisTaskStore, StoredImage, TaskStore, open_store

__all__ = [
    "Delivery",
    "HostAllowList",
    "MemoryTaskStore",
    "RedisTaskStore",
    "ServerState",
    "ServerThread",
    "StoredImage",
    "TaskStore",
    "check_bind",
    "create_app",
    "is_loopback",
    "open_store",
]
