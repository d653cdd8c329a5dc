"""``kandinsky-nb serve``: the Runware REST protocol in front of the local engine."""

from __future__ import annotations

import logging
import os

import click

from ..server.runner import DEFAULT_POLL_WAIT


def _keys(values: tuple[str, ...]) -> list[str]:
    keys = [key.strip() for value in values for key in value.split(",")]
    return [key for key in keys if key]


def _loras(values: tuple[str, ...]) -> dict[str, str]:
    """``NAME=FILE`` options -> name -> absolute path; the files are the operator's, checked now."""
    from pathlib import Path

    loras: dict[str, str] = {}
    for value in values:
        name, sep, file = value.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise click.BadParameter(f"{value!r} is not NAME=FILE; give e.g. --lora style=/models/style.safetensors")
        path = Path(file.strip()).expanduser()
        if not path.exists():
            raise click.BadParameter(f"{value!r}: there is no file or folder {str(path)!r}; give an existing path")
        loras[name.strip()] = str(path.resolve())
    return loras


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
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
    "--delivery-host",
    "delivery_hosts",
    multiple=True,
    help="A host (or host:port) results may be sent to via webhookURL/uploadEndpoint (repeatable). Default: none, "
    "delivery is off. Private or loopback addresses only when listed as addresses (10.0.0.5, 127.0.0.1).",
)
@click.option(
    "--image-host",
    "image_hosts",
    multiple=True,
    help="A host (or host:port) image-input URLs may be fetched from (repeatable). Default: none; clients send "
    "images as data, or upload them and send their UUIDs.",
)
@click.option(
    "--lora",
    "loras",
    multiple=True,
    help="NAME=FILE: a LoRA clients may apply as lora[].model=NAME (repeatable). Default: none. Clients never name "
    "files on this machine.",
)
@click.option(
    "--allow-origin",
    "allowed_origins",
    multiple=True,
    help="A web origin (https://app.example.com) whose pages may POST to the server (repeatable). Default: none, "
    "browsers' cross-origin requests are refused.",
)
@click.option(
    "--store",
    "store_url",
    default="memory",
    show_default=True,
    envvar="KANDINSKY_NB_STORE",
    help="Where tasks, results and images are kept: 'memory' (this process) or a Redis URL "
    "(redis://host:6379/0) shared by every replica behind a load balancer. Default: $KANDINSKY_NB_STORE.",
)
@click.option(
    "--max-image-mb",
    default=512,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --store memory: MiB of images kept (least recently used evicted first).",
)
@click.option(
    "--poll-wait",
    default=DEFAULT_POLL_WAIT,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a getResponse that arrives just before its job's expected finish is held for the result "
    "(announced to clients as pollWaitSeconds). 0: every poll is answered at once.",
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
    delivery_hosts: tuple[str, ...],
    image_hosts: tuple[str, ...],
    loras: tuple[str, ...],
    allowed_origins: tuple[str, ...],
    store_url: str,
    max_image_mb: int,
    poll_wait: float,
    log_level: str,
) -> None:
    """Serve Kandinsky 5.0 Image Lite over the Runware REST protocol (POST /v1).

    Point a notebook at it with RunwareBackend(base_url="http://HOST:PORT") or RUNWARE_BASE_URL.
    """
    from ..errors import ConfigurationError
    from ..server import check_bind, create_app, open_store
    from ..server.outbound import HostAllowList

    keys = _keys(api_keys) or _keys((os.environ.get("KANDINSKY_NB_SERVER_KEYS", ""),))
    try:
        check_bind(host, keys)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    installed_loras = _loras(loras)
    try:  # checked before the engine loads: a typo should not cost a model load
        delivery_allowed = HostAllowList(delivery_hosts, option="--delivery-host")
        images_allowed = HostAllowList(image_hosts, option="--image-host")
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        store = open_store(store_url, max_image_bytes=max_image_mb * 2**20)
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
    try:
        app = create_app(
            backend,
            api_keys=keys,
            max_concurrency=max_concurrency,
            public_url=public_url,
            delivery_hosts=delivery_allowed,
            image_hosts=images_allowed,
            loras=installed_loras,
            allowed_origins=allowed_origins,
            store=store,
            poll_wait=poll_wait,
        )
    except ConfigurationError as exc:
        backend.close()
        raise click.UsageError(str(exc)) from None
    auth = f"{len(keys)} API key(s) required" if keys else "open: any key accepted (loopback only)"
    click.echo(f"Serving on http://{host}:{port}/v1  ({auth}; store: {store!r})")
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    finally:
        backend.close()
