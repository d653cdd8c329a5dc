"""Real-browser test support: start JupyterLab or Voila on 127.0.0.1 with throwaway settings, drive it with headless
Debian Chromium through Python Playwright (``executable_path``; nothing is downloaded), and stop only what we started.

Facts behind the details (root needs ``--allow-root``; wait for the status bar's ``(ipykernel) | Idle``, not the
toolbar indicator, or "Run All" opens a Select Kernel dialog; pre-answer the news toast) are in the project's notebook
UX reference notes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "kandinsky-nb-test"
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A Jupyter server we started: its base URL, process and log file."""

    base: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"server did not start ({url}):\n" + log_path.read_text(errors="replace")[-3000:]
                ) from None
            time.sleep(0.25)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not listen on {port}:\n" + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.25)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Stop only the server we started; on SIGTERM it shuts its kernels down within about a second.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _lab_settings(root: Path) -> Path:
    settings = root / "_lab_settings"
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    # Pre-answer "get notified about official Jupyter news?": the toast covers part of every screenshot otherwise.
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    return settings


def _server_env(root: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWARE_")}
    env.update(
        JUPYTER_CONFIG_DIR=str(root / "_jupyter_config"),
        JUPYTER_RUNTIME_DIR=str(root / "_jupyter_runtime"),
        IPYTHONDIR=str(root / "_ipython"),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def jupyterlab(root: Path, env: Mapping[str, str] | None = None, timeout: float = 90) -> Iterator[Server]:
    """JupyterLab serving ``root`` on a free loopback port, with isolated settings and workspaces."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        f"--ServerApp.token={TOKEN}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={_lab_settings(root)}",
        f"--LabApp.workspaces_dir={root / '_lab_workspaces'}",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = root / "_jupyterlab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=_server_env(root, env or {}), cwd=root
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(f"{base}/api/status?token={TOKEN}", process, log_path, timeout)
            yield Server(base, process, log_path)
        finally:
            _stop(process)


@contextlib.contextmanager
def voila(notebook: Path, env: Mapping[str, str] | None = None, timeout: float = 90) -> Iterator[Server]:
    """Voila rendering one notebook on a free loopback port (it runs every cell server-side on page load)."""
    port = free_port()
    root = notebook.parent
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
    ]
    log_path = root / "_voila.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=_server_env(root, env or {}), cwd=root
        )
        try:
            base = f"http://127.0.0.1:{port}"
            # Polling "/" would render (and execute) the notebook; a listening socket is enough.
            _wait_until_listening(port, process, log_path, timeout)
            yield Server(base, process, log_path)
        finally:
            _stop(process)


# -- page helpers (Playwright sync API) --------------------------------------------------------------------------


def open_notebook_and_run_all(page, server: Server, notebook: str) -> None:  # type: ignore[no-untyped-def]
    """Open a notebook in JupyterLab, wait for a started idle kernel, and run every cell from the Run menu."""
    from playwright.sync_api import expect

    page.goto(f"{server.base}/lab/tree/{notebook}?token={TOKEN}&reset")
    page.locator(".jp-NotebookPanel").first.wait_for(state="visible")
    # The toolbar indicator says "idle" while the status bar still says "No Kernel | Initializing"; running cells
    # then pops a Select Kernel dialog. The status bar is the reliable signal.
    expect(page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\(ipykernel\) \| Idle"))).to_be_visible()
    accept_kernel_dialog(page)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    accept_kernel_dialog(page)


def open_notebook7_and_run_all(page, server: Server, notebook: str) -> None:  # type: ignore[no-untyped-def]
    """The same in Jupyter Notebook 7 (served by the same Jupyter server): its page has no status bar, so wait for
    the toolbar's kernel name and an idle execution indicator."""
    from playwright.sync_api import expect

    page.goto(f"{server.base}/notebooks/{notebook}?token={TOKEN}")
    page.locator(".jp-NotebookPanel").first.wait_for(state="visible")
    expect(page.locator(".jp-KernelName, .jp-Toolbar-kernelName").first).to_contain_text("Python")
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached()
    accept_kernel_dialog(page)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    accept_kernel_dialog(page)


def accept_kernel_dialog(page) -> None:  # type: ignore[no-untyped-def]
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count():
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        dialog.wait_for(state="detached")


def screenshot(page, name: str, **kwargs) -> Path:  # type: ignore[no-untyped-def]
    """Save a screenshot under artifacts/screenshots/ (gitignored) and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path
