"""`kandinsky-nb serve` as a user starts it: a real process, a real port, a real client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.types import ImageInferenceRequest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.local
@pytest.mark.slow
def test_kandinsky_nb_serve_runs_demo_weights_and_says_so(demo_weights, tmp_path):
    port = free_port()
    env = {**os.environ, "KANDINSKY_NB_SERVER_KEYS": "k1,k2", "KANDINSKY_NB_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "kandinsky_nb", "serve", "--port", str(port), "--weights", str(demo_weights)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/").json()
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert health["demo"] is True and health["auth"] == "api key required"
        with RunwareBackend("k2", base_url=f"http://127.0.0.1:{port}") as backend:
            generation = backend.generate(ImageInferenceRequest(positivePrompt="a red fox in snow", steps=10))
        assert generation.demo and generation.images[0].to_pil().size[0] > 0
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "DEMO weights" in output and "k1" not in output and "k2" not in output
