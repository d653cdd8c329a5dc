"""``kandinsky-nb score SWEEP``: score a sweep's images (cached in the run log) and say which setting is cheapest."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import home_option, short_table


@click.command("score")
@click.argument("sweep")
@home_option
@click.option(
    "--scorer",
    "scorer_names",
    default="ssim,psnr,sharpness,colourfulness",
    show_default=True,
    help="Download-free scorers, comma separated.",
)
@click.option("--clip", "clip_weights", help="Also CLIP score, with these weights (a folder or hub id).")
@click.option("--aesthetic", "aesthetic_head", help="Also the aesthetic score, with this head (.pth/.safetensors).")
@click.option(
    "--aesthetic-clip", help="The CLIP the aesthetic head was trained on (default openai/clip-vit-large-patch14)."
)
@click.option("--metric", default="ssim", show_default=True, help="The score the recommendation is about.")
@click.option("--threshold", type=float, help="The score a setting must reach (default: 0.95 SSIM, 30 dB PSNR).")
@click.option(
    "--against",
    "x",
    type=click.Choice(["cost_usd", "latency_s"]),
    default="cost_usd",
    show_default=True,
    help="The frontier's cost axis.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the frontier plot (PNG) and the scored rows (CSV) here.",
)
def command(
    sweep: str,
    home: Path | None,
    scorer_names: str,
    clip_weights: str | None,
    aesthetic_head: str | None,
    aesthetic_clip: str | None,
    metric: str,
    threshold: float | None,
    x: str,
    out: Path | None,
) -> None:
    """Score SWEEP's images against its most expensive setting, print the fewest steps per scheduler and CFG that
    reach the threshold, the score/cost Pareto frontier and a one-line recommendation. Scores are stored in the run
    log: running it again computes only what is new."""
    from ..analysis.quality import fewest_steps, pareto_frontier, plot_frontier, recommend
    from ..analysis.scoring import score_sweep
    from ..errors import KandinskyNBError
    from ..quality import AESTHETIC_CLIP, AestheticScore, CLIPScore, scorer_named
    from ..runlog import RunLog

    try:
        scorers = [scorer_named(name) for name in scorer_names.split(",") if name.strip()]
        if clip_weights:
            scorers.append(CLIPScore(clip_weights))
        if aesthetic_head:
            scorers.append(AestheticScore(aesthetic_head, clip=aesthetic_clip or AESTHETIC_CLIP))
        if metric not in {scorer.metric for scorer in scorers}:
            raise click.BadParameter(
                f"{metric!r} is not among the scorers ({', '.join(s.metric for s in scorers)}); add it to --scorer",
                param_hint="--metric",
            )
        with RunLog(home) as log:
            frame = score_sweep(log, sweep, scorers)
            click.echo(f"sweep {sweep!r} in {log.path}: {frame.attrs['scoring']}")
            steps = fewest_steps(frame, metric, threshold)
            click.echo(f"\nfewest steps reaching the threshold ({metric}):")
            click.echo(short_table(steps, list(steps.columns), limit=len(steps)))
            front = pareto_frontier(frame, metric, x=x)
            click.echo(f"\nPareto frontier of {metric} against {x}:")
            columns = ["size", "scheduler", "CFGScale", "steps", "score", "images", x, "cost_share"]
            click.echo(short_table(front, columns, limit=len(front)))
            click.echo("\n" + str(recommend(frame, metric, threshold)))
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                figure = plot_frontier(frame, metric, x=x, threshold=threshold)
                figure.savefig(out / f"{sweep}-{metric}-frontier.png", dpi=120)
                log.to_csv(out / f"{sweep}-scores.csv", frame)
                click.echo(f"frontier: {out / f'{sweep}-{metric}-frontier.png'}")
                click.echo(f"scores:   {out / f'{sweep}-scores.csv'}")
    except KandinskyNBError as exc:
        raise click.ClickException(str(exc)) from exc
