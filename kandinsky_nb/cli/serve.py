"""``kandinsky-nb serve``: the Runware REST protocol in front of the local engine."""

from __future__ import annotations

import logging
import os

import click


def _keys(values: tuple[str, ...]) -> list[str]:
    keys = [key.strip() for value in values for key in value.split(",")]
    return [key for key in keys if key]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="A Bearer key clients must send (repeatable, or comma separated). Default: $KANDINSKY_NB_SERVER_KEYS. "
    "Without keys the server accepts any key and only listens on loopback.",
)
@click.option(
    "--weights",
    default=None,
    help="Local weights: a diffusers folder or hub id (default: $KANDINSKY_NB_WEIGHTS; none: demo weights).",
)
@click.option("--demo", is_flag=True, help="Run the offline demo weights (random weights: every image is noise).")
@click.option("--public-url", default=None, help="Base URL put in image URLs (default: the address clients used).")
@click.option(
    "--max-concurrency", default=1, show_default=True, type=click.IntRange(min=1), help="Generations run at once."
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def command(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    weights: str | None,
    demo: bool,
    public_url: str | None,
    max_concurrency: int,
    log_level: str,
) -> None:
    """Serve Kandinsky 5.0 Image Lite over the Runware REST protocol (POST /v1).

    Point a notebook at it with RunwareBackend(base_url="http://HOST:PORT") or RUNWARE_BASE_URL.
    """
    from ..errors import ConfigurationError
    from ..server import check_bind, create_app

    keys = _keys(api_keys) or _keys((os.environ.get("KANDINSKY_NB_SERVER_KEYS", ""),))
    try:
        check_bind(host, keys)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        import uvicorn

        from ..backends.local import LocalBackend
    except ImportError as exc:
        raise click.ClickException(
            f"kandinsky-nb serve needs the 'server' and 'local' extras ({exc.name} is missing): "
            "pip install 'kandinsky-nb[server,local]'"
        ) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    weights = None if demo else (weights or os.environ.get("KANDINSKY_NB_WEIGHTS"))
    if weights:
        backend = LocalBackend(weights)
        click.echo(f"Engine: {backend!r}")
    else:
        click.echo("No weights given: building/using the offline DEMO weights. Images are noise, and say so.")
        backend = LocalBackend.from_demo_weights()
    app = create_app(backend, api_keys=keys, max_concurrency=max_concurrency, public_url=public_url)
    auth = f"{len(keys)} API key(s) required" if keys else "open: any key accepted (loopback only)"
    click.echo(f"Serving on http://{host}:{port}/v1  ({auth})")
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    finally:
        backend.close()
