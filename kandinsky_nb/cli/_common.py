"""Helpers shared by the sweep, runs and demo commands (kept free of heavy imports)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import pandas as pd

    from ..planning import SweepReport
    from ..session import Session, SweepPlan

# The run-log folder option every command that logs takes (one definition, one help text).
home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run-log folder (default: $KANDINSKY_NB_HOME or ~/.kandinsky_nb).",
)


def short_table(frame: pd.DataFrame, columns: list[str], limit: int = 20) -> str:
    """A plain-text table of some columns of a DataFrame (the last ``limit`` rows)."""
    present = [c for c in columns if c in frame.columns]
    view = frame[present].tail(limit)
    return view.to_string(index=False, max_colwidth=40) if len(view) else "(no rows)"


def run_sweep_and_report(
    session: Session,
    plan: SweepPlan,
    out: Path,
    *,
    concurrency: int | None,
    echo: Callable[[str], Any] = click.echo,
) -> SweepReport:
    """Estimate, run, draw and export a sweep; print where everything is. Returns the report."""
    echo(str(plan))
    echo(str(plan.estimate(concurrency)))
    report = plan.run(concurrency)
    echo(str(report))
    out.mkdir(parents=True, exist_ok=True)
    sheet = plan.grid()
    grid_path = sheet.save(out / f"{plan.name}-grid.png")
    csv_path = session.runs.to_csv(out / f"{plan.name}.csv", plan.df)
    echo(f"grid:     {grid_path}")
    echo(f"rows:     {csv_path}")
    echo(f"run log:  {session.runs.path}")
    echo(
        short_table(
            plan.df,
            ["id", "status", "steps", "CFGScale", "scheduler", "seed", "latency_s", "cost_usd", "error_code"],
        )
    )
    if session.demo:
        echo("demo weights: images are noise (set RUNWARE_API_KEY or KANDINSKY_NB_WEIGHTS for real images)")
    return report
