"""Real services for the scale tests, on free loopback ports, killed after: Debian's redis-server and nginx. A test
that needs one is skipped, saying which binary is missing (``.ci/run`` installs both)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from scale_testkit import free_port, wait_for_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _need(binary: str, package: str) -> None:
    if not Path(binary).is_file():
        pytest.skip(
            f"{binary} is missing: install Debian's {package} package (apt-get install {package}); .ci/run does"
        )


class RedisServer:
    def __init__(self, port: int, process: subprocess.Popen[bytes], folder: Path) -> None:
        self.port, self.process, self.folder = port, process, folder
        self.url = f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server: loopback only, no persistence, its config in a temporary folder."""
    _need(REDIS_SERVER, "redis-server")
    pytest.importorskip("redis", reason="the redis client is in the server extra")
    folder = tmp_path / "redis"
    folder.mkdir()
    port = free_port()
    config = folder / "redis.conf"
    config.write_text(
        f'bind 127.0.0.1\nport {port}\ndir {folder}\nsave ""\nappendonly no\nprotected-mode yes\n'
        f"logfile {folder / 'redis.log'}\n"
    )
    process = subprocess.Popen([REDIS_SERVER, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=20, what="redis-server", alive=lambda: process.poll() is None)
        yield RedisServer(port, process, folder)
    finally:
        process.kill()
        process.wait(timeout=10)


class Nginx:
    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator:
    """Start nginx round-robin over the given upstream ports (call it once the upstreams listen)."""
    _need(NGINX, "nginx")
    started: list[subprocess.Popen[bytes]] = []

    def start(upstream_ports: list[int]) -> Nginx:
        """nginx may start before its upstreams listen: it tries them per request."""
        folder = tmp_path / "nginx"
        folder.mkdir()
        port = free_port()
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in upstream_ports)
        temp = "\n".join(
            f"  {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # One process (no master): it runs as this user, so its temporary folders need no ownership changes.
        # A POST whose upstream refuses the connection was never sent, so nginx tries the next server; one that was
        # sent and then lost is answered 502, and the client retries it with the same taskUUID.
        (folder / "nginx.conf").write_text(
            f"""daemon off;
master_process off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}
  upstream serve {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    location / {{
      proxy_pass http://serve;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
      proxy_read_timeout 120s;
    }}
  }}
}}
"""
        )
        process = subprocess.Popen(
            [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        wait_for_port(port, timeout=20, what="nginx", alive=lambda: process.poll() is None)
        return Nginx(port, folder)

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)
