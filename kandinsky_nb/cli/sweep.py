"""``kandinsky-nb sweep``: plan, price, run, resume and draw a parameter sweep from the shell."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import UsdAmount, check_sweep_name_option, home_option, out_option


@click.command("sweep")
@click.argument("prompt")
@click.option("--steps", help='Steps: "10-30 (+10)", "10,20,30" or "10-50 [5]".')
@click.option("--cfg", "cfg", help='CFGScale: "3,5,7" or "7.5-8.5 (+0.25)".')
@click.option("--scheduler", help='Schedulers, comma separated: "Euler,UniPC".')
@click.option("--seed", help='Seeds: "1,2" or "1-4".')
@click.option("--size", help='Sizes: "1280x768,1024x1024" or labels such as "1K (5:3)".')
@click.option("--negative", "negative", help="Negative prompt (one value).")
@click.option(
    "--name",
    callback=check_sweep_name_option,
    help="Sweep name; running the same name again resumes it (default: from the definition).",
)
@click.option(
    "--budget", type=UsdAmount(), help="Spending cap in USD; the sweep is refused before sending if it would pass."
)
@click.option(
    "--engine", type=click.Choice(["runware", "local", "demo"]), help="Engine (default: from the environment)."
)
@home_option
@out_option(Path("."), "Where the grid PNG and the sweep's CSV go.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Requests in flight (default 4).")
@click.option(
    "--max-cells",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse a plan of more cells than this (default 10,000): a guard against a typo in a range.",
)
@click.option("--estimate", "estimate_only", is_flag=True, help="Print the plan and its estimate; send nothing.")
def command(
    prompt: str,
    steps: str | None,
    cfg: str | None,
    scheduler: str | None,
    seed: str | None,
    size: str | None,
    negative: str | None,
    name: str | None,
    budget: float | None,
    engine: str | None,
    home: Path | None,
    out: Path,
    concurrency: int | None,
    max_cells: int | None,
    estimate_only: bool,
) -> None:
    """Sweep PROMPT over steps x CFG x scheduler x seed x size; write the grid and the rows."""
    from ..errors import KandinskyNBError
    from ..planning import MAX_CELLS
    from ..session import Session
    from ._common import run_sweep_and_report

    axes = {"steps": steps, "CFGScale": cfg, "scheduler": scheduler, "seed": seed, "size": size}
    axes = {k: v for k, v in axes.items() if v is not None}
    if negative is not None:
        axes["negativePrompt"] = negative
    try:
        session = Session(engine, home=home, budget=budget)
        with session:
            plan = session.sweep(prompt, name=name, max_cells=max_cells or MAX_CELLS, **axes)
            if estimate_only:
                click.echo(str(plan))
                click.echo(str(plan.estimate(concurrency)))
                return
            report = run_sweep_and_report(session, plan, out, concurrency=concurrency)
    except KandinskyNBError as exc:
        raise click.ClickException(str(exc)) from exc
    if report.failed:
        raise SystemExit(1)
