"""``kandinsky-nb generate``: one request on any engine; the images are written to files and logged in the run log."""

from __future__ import annotations

from pathlib import Path

import click

from .. import spec
from .._media import output_format_extension
from ._common import home_option, out_option


@click.command("generate")
@click.argument("prompt")
@click.option("--negative", "negative_prompt", help="Negative prompt (what to avoid).")
@click.option("--width", type=int, help=f"Width in pixels (with --height); sizes: {', '.join(map(str, spec.SIZES))}.")
@click.option("--height", type=int, help="Height in pixels (with --width).")
@click.option("--steps", type=int, help=f"Denoising steps ({spec.LIMITS['steps'].describe()}).")
@click.option("--cfg", "cfg_scale", type=float, help=f"CFGScale ({spec.LIMITS['CFGScale'].describe()}).")
@click.option("--scheduler", type=click.Choice(spec.SCHEDULERS), help="Sampler name, as on the model page.")
@click.option("--seed", type=int, help="Seed (image i of --n uses seed+i); random when not given.")
@click.option("--n", "number_results", type=int, help="Number of images.")
@click.option("--format", "output_format", type=click.Choice(spec.OUTPUT_FORMATS), default="PNG", show_default=True)
@click.option("--quality", "output_quality", type=int, help="JPG/WEBP quality (20-99).")
@out_option(Path("."), "Folder the image files are written to.")
@click.option(
    "--engine",
    type=click.Choice(["local", "demo", "runware"]),
    help="Where to run (default: from the environment: RUNWARE_API_KEY -> runware, KANDINSKY_NB_WEIGHTS -> local, "
    "else demo). --weights implies local.",
)
@click.option("--weights", help="Local weights: a diffusers folder, a hub id, or 'demo'.")
@home_option
def command(
    prompt: str,
    negative_prompt: str | None,
    width: int | None,
    height: int | None,
    steps: int | None,
    cfg_scale: float | None,
    scheduler: str | None,
    seed: int | None,
    number_results: int | None,
    output_format: str,
    output_quality: int | None,
    out: Path,
    engine: str | None,
    weights: str | None,
    home: Path | None,
) -> None:
    """Generate images for PROMPT and write them to --out (one file per image)."""
    from ..errors import KandinskyNBError
    from ..session import Session, open_backend

    fields = {
        "negativePrompt": negative_prompt,
        "width": width,
        "height": height,
        "steps": steps,
        "CFGScale": cfg_scale,
        "scheduler": scheduler,
        "seed": seed,
        "numberResults": number_results,
        "outputFormat": output_format,
        "outputQuality": output_quality,
    }
    fields = {name: value for name, value in fields.items() if value is not None}
    if weights is not None and engine not in (None, "local"):
        raise click.UsageError("--weights applies to the local engine only; drop --engine or use --engine local")
    try:
        # --weights is an option of the local engine; any other choice (or none) is the Session's to make.
        chosen = open_backend("local", weights=weights) if weights is not None else engine
        with Session(chosen, home=home) as session:
            generation = session.generate(prompt, **fields)
    except KandinskyNBError as exc:
        raise click.ClickException(str(exc)) from exc
    extension = output_format_extension(output_format)
    for image in generation.images:
        path = out / f"k5-{image.seed}-{(image.image_uuid or '')[:8]}.{extension}"
        try:
            path.write_bytes(image.data)
        except OSError as exc:  # a full disk, a folder removed meanwhile: the images are safe in the run log
            raise click.ClickException(
                f"could not write {path} ({exc.strerror or exc}); the images are in the run log under taskUUID "
                f"{generation.task_uuid} (kandinsky-nb runs show {generation.task_uuid})"
            ) from exc
        cost = f"  cost ${image.cost:.6f}" if image.cost is not None else ""
        click.echo(f"{path}  seed {image.seed}{cost}")
    details = generation.details
    scheduler_note = details.get("scheduler", {}) if isinstance(details.get("scheduler"), dict) else {}
    click.echo(f"engine {generation.engine}  {generation.latency_s:.2f} s  {len(generation.images)} image(s)")
    if scheduler_note.get("remapped"):
        click.echo(f"scheduler {scheduler_note['name']}: {scheduler_note['note']}")
    if generation.demo:
        click.echo("DEMO WEIGHTS: images are noise (set KANDINSKY_NB_WEIGHTS or RUNWARE_API_KEY for real images)")
