"""The jupyter-server extension: a read-only run-log API mounted under ``<base_url>/kandinsky-nb/api/``.

Enabled by the config file the wheel installs (``etc/jupyter/jupyter_server_config.d/kandinsky_nb.json``). The server
decides where the log is (``c.KandinskyNBExtension.home``, default the toolkit's home: ``$KANDINSKY_NB_HOME`` or
``~/.kandinsky_nb``); nothing the browser sends can change it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Integer, Unicode, default

from .. import settings
from .handlers import API_PREFIX, api_handlers
from .reader import RunLogReader
from .thumbnails import ThumbnailCache

__all__ = ["KandinskyNBExtension"]


class KandinskyNBExtension(ExtensionApp):
    """kandinsky-nb's server extension (configure it as ``c.KandinskyNBExtension.<trait>``)."""

    name = "kandinsky_nb"
    # Only the API: the front end is the prebuilt labextension, loaded by JupyterLab and Notebook 7 themselves.
    load_other_extensions = True

    home = Unicode(
        help="The run log's home folder (runs.db and images/). Default: $KANDINSKY_NB_HOME, else ~/.kandinsky_nb.",
    ).tag(config=True)
    reader_threads = Integer(
        4, help="Threads that read the run log and make thumbnails, off the server's event loop."
    ).tag(config=True)
    thumbnail_cache_bytes = Integer(
        32 * 1024 * 1024, help="Memory the thumbnail cache may hold, in bytes (least recently used go first)."
    ).tag(config=True)

    @default("home")
    def _default_home(self) -> str:
        return str(settings.home_dir())

    def initialize_settings(self) -> None:
        if self.reader_threads < 1:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"KandinskyNBExtension.reader_threads={self.reader_threads} is not accepted: it must be at least 1. "
                "Set it to 4 (the default) or more."
            )
        self.reader = RunLogReader(Path(self.home))
        self.thumbnails = ThumbnailCache(max_bytes=self.thumbnail_cache_bytes)
        self.executor = ThreadPoolExecutor(self.reader_threads, thread_name_prefix="kandinsky-nb-reader")
        self.log.info("kandinsky-nb: read-only run-log API at /%s over %s", API_PREFIX, self.reader.db_path)

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_handlers(self.reader, self.thumbnails, self.executor))

    async def stop_extension(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
