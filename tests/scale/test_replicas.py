"""`kandinsky-nb serve` on more than one machine, for real: nginx round-robin over two `serve` processes on demo
weights that share one redis-server, all on 127.0.0.1. Our client (a logged sweep) and Runware's own SDK run through
the balancer; every cell is answered once; one replica is killed mid-sweep and the sweep still completes, with no
task generated to the end twice (every finished save of a task is seen on Redis's MONITOR feed)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scale_testkit import KEY, free_port, wait_for_port

from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.protocol import RetryPolicy
from kandinsky_nb.session import Session

pytestmark = [pytest.mark.local, pytest.mark.slow]

MODEL = "runware:kandinsky-5.0-image-lite@1"
LEASE_S = 3  # a killed replica's running tasks are handed on after this long
KANDINSKY_NB = Path(sys.executable).with_name("kandinsky-nb")
SAVED_FINISHED = re.compile(r'"SET" "knb:task:([0-9a-f-]{36})" .*success')


class Cluster:
    def __init__(self, url: str, replicas: list[subprocess.Popen[bytes]], monitor_log: Path) -> None:
        self.url, self.replicas, self.monitor_log = url, replicas, monitor_log

    def finished_saves(self) -> Counter[str]:
        """How often each taskUUID was saved finished with images: more than once would be a task paid twice."""
        return Counter(m.group(1) for m in SAVED_FINISHED.finditer(self.monitor_log.read_text(errors="replace")))


@pytest.fixture
def cluster(redis_server, nginx_factory, demo_weights, tmp_path: Path) -> Iterator[Cluster]:
    home = tmp_path / "serve-home"
    home.mkdir()
    (home / "demo-weights").symlink_to(demo_weights)  # built once for the session; both replicas read it
    ports = [free_port(), free_port()]
    balancer = nginx_factory(ports)
    monitor_log = tmp_path / "redis-monitor.log"
    monitor = _start(["redis-cli", "-p", str(redis_server.port), "monitor"], monitor_log)
    replicas = []
    try:
        for port in ports:
            command = [str(KANDINSKY_NB), "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)]
            command += [
                "--api-key",
                KEY,
                "--store",
                f"{redis_server.url}?lease={LEASE_S}",
                "--public-url",
                balancer.url,
            ]
            command += ["--log-level", "warning"]
            env = {**os.environ, "KANDINSKY_NB_HOME": str(home)}
            replicas.append(_start(command, tmp_path / f"replica-{port}.log", env=env))
        for port, process in zip(ports, replicas, strict=True):
            wait_for_port(port, timeout=240, what="kandinsky-nb serve", alive=lambda p=process: p.poll() is None)
            # Load the pipeline (and let the replica measure its engine) before the sweep, straight to the replica.
            with RunwareBackend(KEY, base_url=f"http://127.0.0.1:{port}", timeout=120) as warm:
                warm.generate(_request(seed=0))
        yield Cluster(balancer.url, replicas, monitor_log)
    finally:
        for process in [*replicas, monitor]:
            process.kill()
            process.wait(timeout=10)


def _start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process writing to ``log`` (the child keeps its own copy of the file handle)."""
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)


def _request(**fields):
    from kandinsky_nb.types import ImageInferenceRequest

    return ImageInferenceRequest(positivePrompt="a red fox in snow", steps=10, **fields)


def test_a_sweep_through_the_balancer_completes_when_a_replica_dies_and_nothing_is_paid_twice(cluster, tmp_path):
    backend = RunwareBackend(
        KEY,
        base_url=cluster.url,
        timeout=60,
        poll_timeout=180,
        retry_policy=RetryPolicy(max_retries=5, initial_delay=0.2, max_delay=2.0, poll_max=1.0),
    )
    session = Session(backend, home=tmp_path / "client-home")
    plan = session.sweep(
        "a red fox in snow", name="replicas", seed=list(range(1, 13)), steps=10, deliveryMethod="async"
    )
    killed = threading.Event()

    def on_cell(report) -> None:
        if report.ok >= 3 and not killed.is_set():  # mid-sweep: cells are running on both replicas now
            cluster.replicas[0].send_signal(signal.SIGKILL)
            killed.set()

    with session:
        report = plan.run(concurrency=4, progress=False, on_cell=on_cell)
        rows = session.runs.rows("status = 'ok' AND sweep_id = ?", (plan.name,), limit=None)
    assert killed.is_set()
    assert (report.ok, report.failed, report.not_run) == (12, 0, 0), report.errors
    task_uuids = [row["task_uuid"] for row in rows]
    assert len(task_uuids) == 12 and len(set(task_uuids)) == 12  # every cell answered, once
    saves = cluster.finished_saves()
    assert all(saves[task] == 1 for task in task_uuids), {task: saves[task] for task in task_uuids}
    # The kill really hit cells in flight: some were sent again (same taskUUID) after their replica went away.
    submits = [json.loads(row["details_json"])["submits"] for row in rows]
    assert max(submits) >= 2, submits
    assert cluster.replicas[1].poll() is None  # the survivor served the rest


def test_runwares_own_sdk_runs_async_tasks_through_the_balancer(cluster):
    runware = pytest.importorskip("runware", reason="the official SDK (runware-sdk) is a test dependency")
    task_uuids = [str(uuid.uuid4()) for _ in range(6)]

    async def run_all() -> list[list[dict]]:
        sdk = runware.Runware(api_key=KEY, transport="rest", http_base_url=cluster.url + "/v1")
        async with sdk as client:
            params = [
                {
                    "taskType": "imageInference",
                    "taskUUID": task_uuid,
                    "model": MODEL,
                    "positivePrompt": "a red fox in snow",
                    "steps": 10,
                    "deliveryMethod": "async",
                }
                for task_uuid in task_uuids
            ]
            return await asyncio.gather(*(client.run(p) for p in params))

    results = asyncio.run(run_all())
    assert sorted(r["taskUUID"] for (r,) in results) == sorted(task_uuids)
    for (result,) in results:  # image URLs point at the balancer, and any replica serves them
        assert result["imageURL"].startswith(cluster.url + "/images/")
        assert httpx.get(result["imageURL"]).status_code == 200
    saves = cluster.finished_saves()
    assert all(saves[task] == 1 for task in task_uuids)
