"""``kandinsky-nb runs``: browse and export the run log."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..runlog.store import STATUSES
from ._common import home_option, project_errors


@click.group("runs")
def command() -> None:
    """Browse and export the run log (one row per image, one per failed request)."""


def _where(sweep: str | None, status: str | None) -> tuple[str, list[str]]:
    conditions, params = [], []
    if sweep:
        conditions.append("sweep_id = ?")
        params.append(sweep)
    if status:
        conditions.append("status = ?")
        params.append(status)
    return " AND ".join(conditions), params


@command.command("list")
@home_option
@click.option("--sweep", help="Only this sweep.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show the last N rows.")
def list_runs(home: Path | None, sweep: str | None, status: str | None, limit: int) -> None:
    """The latest rows of the log."""
    from ..runlog import METRIC_COLUMN_PREFIX, RunLog
    from ._common import short_table

    with project_errors(), RunLog(home) as log:
        where, params = _where(sweep, status)
        frame = log.dataframe(where, params)
        click.echo(f"{log.path}: {len(frame)} rows" + (f" (last {limit})" if len(frame) > limit else ""))
        columns = ["id", "created_utc", "status", "engine", "demo", "size", "steps", "CFGScale", "scheduler", "seed"]
        columns += ["cost_usd", "latency_s", "sweep_id", "error_code"]
        columns += [c for c in frame.columns if c.startswith(METRIC_COLUMN_PREFIX)]  # scores, where stored
        click.echo(short_table(frame, columns, limit))


@command.command("show")
@home_option
@click.argument("key")
def show(home: Path | None, key: str) -> None:
    """One run by row id or taskUUID: every column, with the request and response JSON."""
    from ..runlog import RunLog

    with project_errors(), RunLog(home) as log:
        rows = log.get(key)
        if not rows:
            raise click.ClickException(f"no run with id or taskUUID {key!r}; `kandinsky-nb runs list` shows the ids")
        for row in rows:
            for name in ("request_json", "response_json", "details_json"):
                if row.get(name):
                    row[name] = json.loads(row[name])
            click.echo(json.dumps(row, indent=2, default=str, ensure_ascii=False))


@command.command("export")
@home_option
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "csv"]), default=None, help="Default: from PATH's extension."
)
@click.option("--sweep", help="Only this sweep.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def export(home: Path | None, fmt: str | None, sweep: str | None, status: str | None, path: Path) -> None:
    """Write the log (or one sweep) to Parquet or CSV."""
    from ..runlog import RunLog

    with project_errors(), RunLog(home) as log:
        where, params = _where(sweep, status)
        frame = log.dataframe(where, params)
        out = log.export(path, fmt, frame)
        click.echo(f"wrote {len(frame)} rows to {out}")
