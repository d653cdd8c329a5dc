"""Helpers shared by the sweep, runs and demo commands (kept free of heavy imports)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import pandas as pd

    from ..planning import SweepReport
    from ..session import Session, SweepPlan


@contextlib.contextmanager
def project_errors() -> Iterator[None]:
    """The toolkit's own errors (whose messages end with the fix) become a clean CLI error, not a traceback."""
    from ..errors import KandinskyNBError

    try:
        yield
    except KandinskyNBError as exc:
        raise click.ClickException(str(exc)) from exc


def writable_folder(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be used as a folder to write in (created if missing), or None when it can."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        return f"{_shown(str(path))} cannot be used as the {what} ({reason}); give a folder you can create and write"
    return None


def _shown(text: str, limit: int = 120) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"...<{len(text)} characters>"


def _check_home(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # Checked before anything runs (or is paid for): a run log that cannot be written fails at the first row.
    if value is None:
        from_env = os.environ.get("KANDINSKY_NB_HOME")
        problem = writable_folder(Path(from_env).expanduser(), "run-log folder") if from_env else None
        if problem:
            raise click.BadParameter(f"$KANDINSKY_NB_HOME: {problem}", ctx, param)
        return None
    problem = writable_folder(value.expanduser(), "run-log folder")
    if problem:
        raise click.BadParameter(problem, ctx, param)
    return value


def _check_out(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # Checked before anything is generated: images paid for must have somewhere to go.
    problem = writable_folder(value, "output folder") if value is not None else None
    if problem:
        raise click.BadParameter(problem, ctx, param)
    return value


# The run-log folder option every command that logs takes (one definition, one help text).
home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    callback=_check_home,
    help="Run-log folder (default: $KANDINSKY_NB_HOME or ~/.kandinsky_nb).",
)


def out_option(default: Path | None, help: str) -> Callable[[Any], Any]:
    """An output-folder option, checked writable before anything runs."""
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        callback=_check_out,
        help=help,
    )


class UsdAmount(click.ParamType):
    """A spending cap in USD: a finite number of at least 0 (``nan``, ``inf`` and negatives are refused, as
    ``Session(budget=...)`` refuses them: the Budget is the one place that rule lives)."""

    name = "usd"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from ..errors import ConfigurationError
        from ..session.budget import Budget

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{_shown(str(value))} is not a number; give USD such as 2.50", param, ctx)
        try:
            Budget(number)
        except ConfigurationError:
            self.fail(
                f"{_shown(str(value))} is not allowed: a budget is a finite number of USD of at least 0, such as "
                "2.50; leave --budget out for no cap",
                param,
                ctx,
            )
        return number


def check_sweep_name_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from ..errors import SweepError
    from ..planning import check_sweep_name

    if value is None:
        return None
    try:
        return check_sweep_name(value)
    except SweepError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def file_stem(name: str) -> str:
    """A sweep name made safe as a file name in --out (no separators, no dot-dot; a short hash keeps it unique)."""
    safe = re.sub(r"[^\w.-]+", "_", name).strip("._")[:80]
    if safe == name:
        return name
    return f"{safe or 'sweep'}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


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
    stem = file_stem(plan.name)
    grid_path = sheet.save(out / f"{stem}-grid.png")
    csv_path = session.runs.to_csv(out / f"{stem}.csv", plan.df)
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
