"""kandinsky_nb in Jupyter: the server extension (a read-only run-log API behind Jupyter's auth), the prebuilt
JupyterLab / Notebook 7 extension it serves data to, and the IPython magics (``%load_ext kandinsky_nb``).

The top of the import layers: it may import anything of kandinsky_nb, and nothing of kandinsky_nb imports it. The
hook functions in ``kandinsky_nb/__init__.py`` import these modules only when Jupyter or IPython calls them, so
``import kandinsky_nb`` never loads jupyter_server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LABEXTENSION_NAME", "labextension_paths", "load_ipython_extension", "server_extension_points"]

# The npm package name in package.json: the folder under share/jupyter/labextensions/.
LABEXTENSION_NAME = "kandinsky-nb"


def server_extension_points() -> list[dict[str, Any]]:
    from .app import KandinskyNBExtension

    return [{"module": "kandinsky_nb.jupyter.app", "app": KandinskyNBExtension}]


def labextension_paths() -> list[dict[str, str]]:
    # "src" is relative to the kandinsky_nb package (the hook lives there): the build writes kandinsky_nb/labextension.
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def load_ipython_extension(ipython: Any) -> None:
    from .magics import KandinskyMagics

    ipython.register_magics(KandinskyMagics)
