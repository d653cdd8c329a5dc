"""The ``kandinsky-nb`` command. Each subcommand lives in its own module and imports heavy parts only when run."""

from __future__ import annotations

import click

from .. import spec
from .._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kandinsky-nb")
def main() -> None:
    """Kandinsky 5.0 Image Lite from the command line: generate, sweep, serve, and browse the run log."""


@main.command()
def info() -> None:
    """Print the model facts this toolkit validates against."""
    click.echo(f"{spec.MODEL_NAME}  ({spec.MODEL_ID})")
    click.echo("sizes:      " + ", ".join(f"{s.label} {s}" for s in spec.SIZES))
    click.echo("schedulers: " + ", ".join(spec.SCHEDULERS))
    for name, limit in spec.LIMITS.items():
        click.echo(
            f"{name:45} {limit.describe()}" + (f", default {limit.default:g}" if limit.default is not None else "")
        )
    click.echo(f"list price: ${spec.LIST_PRICE_USD} for {spec.LIST_PRICE_SIZE} at {spec.LIST_PRICE_STEPS} steps")


def _register() -> None:
    """Attach the subcommands. Each module imports only click at load time; heavy parts load when a command runs."""
    import importlib

    for module_name in ("generate", "serve", "demo", "sweep", "runs", "score", "weights"):
        main.add_command(importlib.import_module(f"{__name__}.{module_name}").command)


_register()
