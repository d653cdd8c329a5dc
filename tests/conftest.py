"""Shared fixtures. Every test gets its own KANDINSKY_NB_HOME and no Runware key from the environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KANDINSKY_NB_HOME", str(tmp_path / "kandinsky_nb_home"))
    monkeypatch.delenv("RUNWARE_API_KEY", raising=False)
    monkeypatch.delenv("RUNWARE_BASE_URL", raising=False)
    monkeypatch.delenv("KANDINSKY_NB_ENGINE", raising=False)
    monkeypatch.delenv("KANDINSKY_NB_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def demo_weights(tmp_path_factory):
    """Tiny random Kandinsky 5 pipelines (the real classes), built offline once per test session."""
    pytest.importorskip("diffusers", reason="needs the 'local' extra")
    from kandinsky_nb.backends.local import build_demo_weights

    return build_demo_weights(tmp_path_factory.mktemp("demo-weights"))


@pytest.fixture(scope="session")
def demo_backend(demo_weights):
    """The local engine on demo weights at reduced scale: a 1024x1024 request runs in well under a second."""
    from kandinsky_nb.backends.local import LocalBackend

    backend = LocalBackend.from_demo_weights(demo_weights)
    yield backend
    backend.close()


def pytest_configure(config):
    # Notebook kernels (nbval) inherit this process's environment: give them a throwaway home and no Runware key,
    # so a CI run never writes to ~/.kandinsky_nb and never reaches the cloud.
    import os
    import tempfile

    os.environ["KANDINSKY_NB_HOME"] = tempfile.mkdtemp(prefix="kandinsky-nb-test-home-")
    for name in ("RUNWARE_API_KEY", "RUNWARE_BASE_URL", "KANDINSKY_NB_ENGINE", "KANDINSKY_NB_WEIGHTS"):
        os.environ.pop(name, None)
