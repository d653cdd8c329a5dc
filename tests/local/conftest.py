"""Local-engine tests run torch on one intra-op thread: the demo model is tiny, and on a shared CI machine competing
threads make it several times slower (the demo backend itself does the same while generating)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    torch = pytest.importorskip("torch", reason="needs the 'local' extra")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
