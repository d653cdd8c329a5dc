"""Fixtures for the Jupyter tests: a real run log made by the demo engine (single runs, a sweep, a failure), and a
jupyter_server with the kandinsky_nb extension (pytest-jupyter) that reads it.

pytest-jupyter's server lives on its own event loop (``jp_asyncio_loop``) while the project runs pytest-asyncio in
auto mode, so the API tests are plain functions that drive that loop through the ``api`` fixture.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# pytest-jupyter's fixtures, for this folder only. Registered as a plugin (pytest_plugins) its autouse event-loop
# fixture and its async-test hooks would apply to the whole suite and fight pytest-asyncio and Playwright there.
from pytest_jupyter.jupyter_server import *  # noqa: F403

del pytest_pycollect_makeitem, pytest_pyfunc_call  # noqa: F821  (its async-test hooks: this folder has no async tests)

PROMPTS = ("a red fox in snow", "a lighthouse at dusk", "100% pure_ink sketch")


@dataclass(frozen=True)
class DemoLog:
    """A run log made once per test session; tests that change it work on a copy (``log_home``)."""

    home: Path
    run_ids: tuple[int, ...]  # single runs, oldest first
    failed_id: int
    sweep_name: str
    sweep_cells: int


@pytest.fixture(scope="session")
def demo_log(tmp_path_factory, demo_weights) -> DemoLog:
    import kandinsky_nb as knb

    home = tmp_path_factory.mktemp("jupyter-log") / "home"
    # The demo engine finds its weights in the home folder (copied from the test session's, built once).
    shutil.copytree(demo_weights, home / "demo-weights")
    session = knb.Session(engine="demo", home=home)
    try:
        run_ids = []
        for index, prompt in enumerate(PROMPTS):
            session.generate(prompt, width=1024, height=1024, steps=10, seed=7 + index)
            run_ids.append(session.runs.rows()[-1]["id"])
        request = knb.ImageInferenceRequest(positivePrompt="a run that failed", width=1024, height=1024, steps=10)
        failed_id = session.runs.record_failure(
            request, knb.BackendError("out of memory (a test failure)"), engine="local", demo=True
        )
        plan = session.sweep("a sweep of a cat", name="cats", steps=[10, 12], seed=[1, 2], width=1024, height=1024)
        plan.run(progress=False)
    finally:
        session.close()
    return DemoLog(home, tuple(run_ids), failed_id, "cats", 4)


@pytest.fixture
def log_home(demo_log, tmp_path) -> Path:
    """A copy of the demo log's home for one test (the server reads this one)."""
    home = tmp_path / "served-home"
    shutil.copytree(demo_log.home, home, ignore=shutil.ignore_patterns("demo-weights"))
    return home


@pytest.fixture
def jp_server_config(log_home):
    return {
        "ServerApp": {
            "jpserver_extensions": {"kandinsky_nb": True},
            # Every route must refuse a request without credentials, as a locked-down server would.
            "allow_unauthenticated_access": False,
        },
        "KandinskyNBExtension": {"home": str(log_home)},
    }


@dataclass
class Reply:
    code: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop):
    """``api("runs", limit=3)`` -> Reply: a GET under /kandinsky-nb/api/ with the server's token (``token=None``:
    without any credentials). Error statuses are returned, not raised."""
    from tornado.httpclient import HTTPClientError

    def get(route: str, *, token: bool = True, **params) -> Reply:
        headers = {} if token else {"Authorization": ""}
        parts = ["kandinsky-nb", "api", *route.split("/")]
        try:
            response = jp_asyncio_loop.run_until_complete(
                jp_fetch(*parts, params={k: str(v) for k, v in params.items()}, headers=headers)
            )
        except HTTPClientError as error:
            response = error.response
            if response is None:
                raise
        return Reply(response.code, dict(response.headers), response.body or b"")

    return get
