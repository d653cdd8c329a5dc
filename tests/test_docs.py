"""The README and the Binder config stay true: what they name exists and works as they say."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from kandinsky_nb.cli import main
from kandinsky_nb.runlog import migrate

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_lists_the_run_log_columns_exactly():
    db = sqlite3.connect(":memory:")
    migrate(db)
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    block = README[README.index("## The run log") : README.index("## Cost analysis")]
    listed = re.findall(r"`([^`]*)`", block)
    documented = max(listed, key=len)
    names = [re.sub(r"\s*\(.*?\)", "", part).strip() for part in documented.replace("\n", " ").split(",")]
    assert names == columns


def test_readme_commands_exist():
    runner = CliRunner()
    for command in [*re.findall(r"^kandinsky-nb (\w+)", README, re.M), "generate", "weights", "demo", "runs"]:
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    sweep_help = runner.invoke(main, ["sweep", "--help"]).output
    for option in re.findall(r"kandinsky-nb sweep .*", README)[0].split():
        if option.startswith("--"):
            assert option in sweep_help, option


def test_readme_files_exist():
    for path in ["scripts/demo", "scripts/test", ".ci/run", "benchmarks/RESULTS.md", "docs/images/demo-grid.png"]:
        assert (ROOT / path).exists(), path
    for notebook in re.findall(r"`(\w+)`", README[README.index("## Notebooks") : README.index("## Benchmarks")]):
        assert (ROOT / "notebooks" / f"{notebook}.ipynb").exists(), notebook
    for script in re.findall(r"`(bench_\w+\.py)`", README):
        assert (ROOT / "benchmarks" / script).exists(), script


def test_binder_installs_what_the_notebooks_need():
    requirements = (ROOT / "binder" / "requirements.txt").read_text()
    assert "torch==2.13.0+cpu" in requirements  # CPU-only torch on mybinder
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert '".[local,notebook]"' in post_build and "kandinsky-nb weights build" in post_build
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert "urlpath=lab/tree/notebooks/quickstart.ipynb" in README


def test_the_readme_notebook_example_runs_on_the_demo_engine():
    import pytest

    pytest.importorskip("diffusers", reason="needs the 'local' extra")
    block = re.search(r"## In a notebook\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    session, plan = namespace["s"], namespace["plan"]
    assert session.demo and namespace["r"].images[0].seed == 7
    assert plan.status()["ok"] == 36  # 3 steps x 3 CFG x 2 schedulers x 2 seeds
    assert len(session.runs.df) == 37
    # The quality section continues the same session: its sweep scored, a recommendation and a frontier drawn.
    quality = re.search(r"## Quality against cost\n\n.*?```python\n(.*?)```", README, re.S).group(1)
    exec(compile(quality, "README.md", "exec"), namespace)
    scores = namespace["scores"]
    assert len(scores) == 36 and scores["score_ssim"].notna().all()
    assert set(session.runs.df.columns) >= {"score_ssim", "score_psnr", "score_sharpness", "score_colourfulness"}
    session.close()


def test_notebooks_are_stored_without_outputs():
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = [cell for cell in cells if cell["cell_type"] == "code"]
        assert code, path.name
        assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code), path.name
