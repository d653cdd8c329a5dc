"""One sweep name, two runs: the second is refused while the first holds the sweep's lease, so no cell is generated
twice; a run killed with SIGKILL leaves no stale lock, and the next run resumes it without paying twice. The runs are
real ``kandinsky-nb sweep`` processes against the project's Runware-speaking server on 127.0.0.1, whose engine holds
every generation at a gate the test opens, so the overlap is certain rather than timed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sweep_testkit import KEY, PricedEngine, runware, served

from kandinsky_nb.runlog import RunLog
from kandinsky_nb.session import Session, SweepBusyError, SweepLease

CELLS = 4


class GatedEngine(PricedEngine):
    """Holds every generation until ``gate`` is set; counts the generations it started."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started: list[str] = []

    def generate(self, request):
        self.started.append(request.taskUUID)
        self.gate.wait(60)
        return super().generate(request)

    async def agenerate(self, request):
        self.started.append(request.taskUUID)
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        return await super().agenerate(request)


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _sweep_process(url: str, home: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RUNWARE_API_KEY": KEY, "RUNWARE_BASE_URL": url, "KANDINSKY_NB_HOME": str(home)}
    arguments = ["sweep", "a red fox in snow", "--steps", "10", "--seed", f"1-{CELLS}", "--name", "shared"]
    arguments += ["--concurrency", "1", "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-m", "kandinsky_nb", *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _cells_logged(home: Path) -> Counter[str]:
    with RunLog(home) as log:
        return Counter(row["sweep_cell"] for row in log.sweep_rows("shared") if row["status"] == "ok")


@pytest.fixture
def gated():
    engine = GatedEngine()
    with served(engine) as (url, state):
        yield engine, url, state
        engine.gate.set()


@pytest.mark.slow
def test_a_second_process_running_the_same_sweep_is_refused_and_no_cell_runs_twice(gated, tmp_path):
    engine, url, _ = gated
    home = tmp_path / "home"
    first = _sweep_process(url, home, tmp_path / "out-1")
    try:
        _wait_for(lambda: engine.started, "the first run's first cell to reach the engine")
        second = _sweep_process(url, home, tmp_path / "out-2")
        output, _ = second.communicate(timeout=180)
        assert second.returncode == 1, output
        assert f"sweep 'shared' is being run by process {first.pid}" in output
        assert "nothing was sent" in output and "Traceback" not in output
        assert len(engine.started) == 1  # the second run sent nothing
    finally:
        engine.gate.set()
        first_output, _ = first.communicate(timeout=180)
    assert first.returncode == 0, first_output
    assert f"{CELLS} ok" in first_output
    assert len(engine.started) == len(set(engine.started)) == CELLS  # every cell generated once
    assert sorted(_cells_logged(home).values()) == [1] * CELLS


@pytest.mark.slow
def test_a_killed_run_leaves_no_stale_lease_and_the_next_run_resumes_without_paying_twice(gated, tmp_path):
    engine, url, _ = gated
    home = tmp_path / "home"
    first = _sweep_process(url, home, tmp_path / "out-1")
    _wait_for(lambda: engine.started, "the first run's first cell to reach the engine")
    lease = SweepLease(home, "shared")
    assert lease.holder()["pid"] == first.pid
    first.send_signal(signal.SIGKILL)  # a crash: no cleanup runs, the lock file and its holder note stay behind
    first.communicate(timeout=60)  # reaps it and closes its pipe
    assert lease.path.exists()
    engine.gate.set()  # the engine finishes the dead run's cell; it stays unanswered in that run's log
    second = _sweep_process(url, home, tmp_path / "out-2")
    output, _ = second.communicate(timeout=180)
    assert second.returncode == 0, output
    assert "already done" in output and "Traceback" not in output
    assert sorted(_cells_logged(home).values()) == [1] * CELLS
    # The killed run's cell was looked up by its taskUUID, not generated again.
    assert len(engine.started) == len(set(engine.started)) == CELLS
    assert lease.holder()["pid"] == second.pid


def test_a_second_run_in_the_same_process_is_refused_while_the_first_runs(gated, tmp_path):
    engine, url, _ = gated
    with Session(runware(url), home=tmp_path) as session:
        plan = session.sweep("a red fox in snow", name="shared", steps=10, seed="1-2")
        again = session.sweep("a red fox in snow", name="shared", steps=10, seed="1-2")
        worker = threading.Thread(target=plan.run, kwargs={"concurrency": 1, "progress": False})
        worker.start()
        _wait_for(lambda: engine.started, "the first run's first cell to reach the engine")
        with pytest.raises(SweepBusyError, match=rf"being run by process {os.getpid()} .*then run the sweep again"):
            again.run(progress=False)
        engine.gate.set()
        worker.join(60)
        report = again.run(progress=False)  # the lease is free again: everything is already done
    assert report.skipped_done == 2 and report.ok == 0
    assert len(engine.started) == 2


def test_a_lease_left_by_a_dead_process_is_taken_over(tmp_path):
    lease = SweepLease(tmp_path, "crashed")
    lease.path.parent.mkdir(parents=True)
    lease.path.touch()  # what a killed holder leaves behind: the file, with no process holding its lock
    lease.holder_path.write_text('{"pid": 999999999, "host": "gone", "since": "2026-01-01"}')
    with lease:
        assert lease.held and lease.holder()["pid"] == os.getpid()
    assert not lease.held


def test_a_lease_that_cannot_be_written_is_a_run_log_error(tmp_path):
    from kandinsky_nb.errors import RunLogError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunLogError, match=r"cannot take the lease of sweep 'x'.*give a run-log home you can write"):
        SweepLease(blocker, "x").acquire()
