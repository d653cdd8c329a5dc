"""``kandinsky-nb serve``: a Runware-compatible REST server in front of any engine (needs the ``server`` extra)."""

from ._thread import ServerThread
from .app import ServerState, create_app, validation_error_items
from .binding import check_bind, is_loopback

__all__ = ["ServerState", "ServerThread", "check_bind", "create_app", "is_loopback", "validation_error_items"]
