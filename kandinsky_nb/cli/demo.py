"""``kandinsky-nb demo``: a small steps x CFG x scheduler sweep end to end, offline, on demo weights."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import home_option, out_option

DEMO_PROMPT = "a red fox in snow"
DEMO_AXES = {"steps": [10, 20], "CFGScale": [3, 7], "scheduler": ["Euler", "UniPC"]}


@click.command("demo")
@home_option
@out_option(None, "Where the grid goes (default: <home>/demo).")
def command(home: Path | None, out: Path | None) -> None:
    """Run a 2x2x2 sweep (steps 10,20 x CFG 3,7 x Euler,UniPC) on the offline demo engine and draw its grid.

    No network, no GPU, no key. The demo weights are random, so the images are noise: this shows the toolkit's
    whole path (validation, run log, sweep, resume, grid, cost), not the model. Run it again and every cell is
    skipped as already done."""
    from .. import settings
    from ..errors import KandinskyNBError
    from ..session import Session
    from ._common import run_sweep_and_report

    click.echo("kandinsky-nb demo: offline demo weights (tiny random model); images are noise")
    try:
        with Session("demo", home=home) as session:
            plan = session.sweep(DEMO_PROMPT, name="demo", **DEMO_AXES)
            target = out or settings.home_dir(home) / "demo"
            run_sweep_and_report(session, plan, target, concurrency=None)
    except KandinskyNBError as exc:
        raise click.ClickException(str(exc)) from exc
