"""The Jupyter hooks in ``kandinsky_nb/__init__.py``: found by jupyter_server, JupyterLab and IPython, and lazy, so
``import kandinsky_nb`` never loads jupyter_server (the jupyter layer sits on top and nothing imports it)."""

from __future__ import annotations

import subprocess
import sys


def test_import_kandinsky_nb_loads_nothing_of_jupyter():
    code = (
        "import sys, kandinsky_nb\n"
        "loaded = [m for m in sys.modules if m.startswith(('jupyter_server', 'tornado', 'kandinsky_nb.jupyter'))]\n"
        "assert not loaded, loaded\n"
        "assert callable(kandinsky_nb._jupyter_server_extension_points)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_hooks_point_at_the_extension_the_labextension_and_the_magics():
    import kandinsky_nb
    from kandinsky_nb.jupyter.app import KandinskyNBExtension
    from kandinsky_nb.jupyter.magics import KandinskyMagics

    (point,) = kandinsky_nb._jupyter_server_extension_points()
    assert point["app"] is KandinskyNBExtension and point["module"] == "kandinsky_nb.jupyter.app"
    assert kandinsky_nb._jupyter_labextension_paths() == [{"src": "labextension", "dest": "kandinsky-nb"}]

    registered = []

    class Shell:
        def register_magics(self, magics):
            registered.append(magics)

    kandinsky_nb.load_ipython_extension(Shell())
    assert registered == [KandinskyMagics]


def test_the_server_refuses_a_nonsense_thread_count(tmp_path):
    import pytest

    from kandinsky_nb.errors import ConfigurationError
    from kandinsky_nb.jupyter.app import KandinskyNBExtension

    extension = KandinskyNBExtension(home=str(tmp_path), reader_threads=0)
    with pytest.raises(ConfigurationError, match="reader_threads=0"):
        extension.initialize_settings()
