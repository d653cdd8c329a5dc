"""The wheel and sdist carry the JupyterLab extension: the prebuilt labextension under share/jupyter, the config file
that enables the server extension, and (in the sdist) the built assets, so neither install needs node. The lockfile
is in git and the build outputs are not. Built here with hatchling and the project's own build hooks."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABEXTENSION = "share/jupyter/labextensions/kandinsky-nb"

pytestmark = pytest.mark.slow


def _build(target: str, out: Path) -> Path:
    # No isolation: the test environment has hatchling and hatch-jupyter-builder (the test extra); the hook finds
    # the labextension built by scripts/setup and does not rebuild it.
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", target, "-d", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (artifact,) = out.iterdir()
    return artifact


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    return zipfile.ZipFile(_build("wheel", tmp_path_factory.mktemp("wheel")))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tarfile.TarFile:
    return tarfile.open(_build("sdist", tmp_path_factory.mktemp("sdist")))


def _data(wheel: zipfile.ZipFile, suffix: str) -> list[str]:
    return [name for name in wheel.namelist() if ".data/data/" in name and name.split(".data/data/", 1)[1] == suffix]


def test_the_wheel_carries_the_prebuilt_labextension(wheel):
    names = [n.split(".data/data/", 1)[1] for n in wheel.namelist() if ".data/data/" in n]
    assert f"{LABEXTENSION}/package.json" in names
    assert f"{LABEXTENSION}/install.json" in names
    assert f"{LABEXTENSION}/static/style.js" in names
    assert any(n.startswith(f"{LABEXTENSION}/static/remoteEntry.") for n in names)
    assert f"{LABEXTENSION}/schemas/kandinsky-nb/plugin.json" in names
    (package,) = _data(wheel, f"{LABEXTENSION}/package.json")
    metadata = json.loads(wheel.read(package))
    assert metadata["name"] == "kandinsky-nb" and metadata["jupyterlab"]["_build"]["load"].startswith("static/")


def test_the_wheel_enables_the_server_extension(wheel):
    (config,) = _data(wheel, "etc/jupyter/jupyter_server_config.d/kandinsky_nb.json")
    assert json.loads(wheel.read(config)) == {"ServerApp": {"jpserver_extensions": {"kandinsky_nb": True}}}


def test_the_wheel_has_the_python_side_and_no_javascript_sources(wheel):
    names = wheel.namelist()
    for module in ("app", "handlers", "reader", "magics", "thumbnails", "code"):
        assert f"kandinsky_nb/jupyter/{module}.py" in names
    assert not any("node_modules" in n or n.endswith(".ts") or "/.yarn/" in n for n in names)


def test_the_sdist_builds_without_node(sdist):
    names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    # The built assets ride along (skip-if-exists: a wheel built from the sdist needs no node) ...
    assert "kandinsky_nb/labextension/static/style.js" in names
    # ... with everything needed to rebuild them, and none of the dependencies or caches.
    assert {"package.json", "yarn.lock", "tsconfig.json", "src/index.ts", "install.json"} <= set(names)
    assert not any(n.startswith(("node_modules/", ".yarn/", "lib/")) for n in names)


def test_a_wheel_builds_from_the_sdist_with_no_node_on_path(sdist, tmp_path):
    sdist.extractall(tmp_path, filter="data")
    (source,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    # A PATH holding only python: no node, no jlpm.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=source,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = (tmp_path / "dist").iterdir()
    names = zipfile.ZipFile(built).namelist()
    assert any(name.endswith(f"{LABEXTENSION}/static/style.js") for name in names)


def test_git_tracks_the_lockfile_and_ignores_the_build():
    tracked = subprocess.run(
        ["git", "ls-files", "yarn.lock", "package.json", "src", "kandinsky_nb/labextension", "node_modules"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "yarn.lock" in tracked and "package.json" in tracked and "src/index.ts" in tracked
    assert not [name for name in tracked if name.startswith(("kandinsky_nb/labextension/", "node_modules/"))]
    ignored = subprocess.run(
        ["git", "check-ignore", "kandinsky_nb/labextension/static/style.js", "node_modules/x", "lib/index.js"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(ignored) == 3
