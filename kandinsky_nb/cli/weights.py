"""``kandinsky-nb weights``: the offline demo weights (tiny random Kandinsky 5 pipelines)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("weights")
def command() -> None:
    """Build or locate the offline demo weights."""


@command.command("build")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to build them (default: <KANDINSKY_NB_HOME>/demo-weights).",
)
def build(folder: Path | None) -> None:
    """Build the tiny random demo pipelines (offline, seconds). A complete build is reused."""
    from ..backends.local import build_demo_weights
    from ..errors import KandinskyNBError

    try:
        path = build_demo_weights(folder)
    except KandinskyNBError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"demo weights: {path}")
    click.echo("Their images are noise; use them with --engine demo or KANDINSKY_NB_WEIGHTS=" + str(path))
