"""The layer contract (pyproject.toml, [tool.importlinter]) holds, and it really catches what it is there to catch.

`lint-imports` also runs in scripts/test; these tests prove that the contract fails on an upward import and on a
circle, so a green contract means something.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is in the test extra")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the project's own contracts (its pyproject.toml) over the package copy in ``tree``."""
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "kandinsky_nb", tmp_path / "kandinsky_nb", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_package_keeps_its_layers_and_has_no_circles(package_copy: Path) -> None:
    result = _lint(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(package_copy: Path) -> None:
    # The run log reaching up into the panels is exactly the kind of import the layers forbid.
    store = package_copy / "kandinsky_nb" / "runlog" / "__init__.py"
    store.write_text(store.read_text() + "\nfrom ..ui import GeneratePanel  # noqa\n")
    result = _lint(package_copy)
    assert result.returncode != 0
    assert "kandinsky_nb.runlog -> kandinsky_nb.ui" in result.stdout


def test_a_circle_between_siblings_breaks_the_contract(package_copy: Path) -> None:
    # Two modules of one package that import each other: no layer rule sees it, the acyclic contract must.
    runlog = package_copy / "kandinsky_nb" / "runlog"
    (runlog / "_circle_a.py").write_text("from . import _circle_b  # noqa\n")
    (runlog / "_circle_b.py").write_text("from . import _circle_a  # noqa\n")
    result = _lint(package_copy)
    assert result.returncode != 0
    assert "_circle_a" in result.stdout
