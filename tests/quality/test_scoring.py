"""Scoring a sweep into the run log: values equal the scorers' own, each (image, scorer, reference, version) is
computed once however often and from however many threads it is asked for, a running sweep's images wait for their
reference, an unreadable file is skipped and scored once restored, and the demo engine's scores say they are noise."""

from __future__ import annotations

import math
import os
import sys
import threading

import pytest
from quality_testkit import PROMPT, converging, grid, log_cells

import kandinsky_nb
from kandinsky_nb.analysis.quality import DEMO_NOTE, recommend
from kandinsky_nb.analysis.scoring import score_runs, score_sweep, score_sweep_in_background
from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.quality import PSNR, SSIM, CLIPScore, Colourfulness, Sharpness


class Counting(Sharpness):
    """Sharpness that counts the images it scores (a real scorer, so the test sees what score_sweep asks of it)."""

    metric = "sharpness"

    def __init__(self) -> None:
        self.images = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def score(self, image, *, reference=None, prompt=None):
        with self._lock:
            self.images += 1
            self.threads.add(threading.current_thread().name)
        return super().score(image)


CELLS = grid(steps=[10, 30, 50], seed=[1, 2])


def test_scores_are_the_scorers_own_values_against_each_seeds_reference(runs):
    ids = log_cells(runs, "fox", CELLS)
    frame = score_sweep(runs, "fox")
    by_cell = dict(zip(ids, CELLS, strict=True))
    reference = {cell["seed"]: converging({**cell, "steps": 50}) for cell in CELLS}
    for row in frame.itertuples():
        cell = by_cell[row.id]
        image = converging(cell)
        assert row.score_ssim == pytest.approx(SSIM().score(image, reference=reference[cell["seed"]]))
        assert row.score_psnr == pytest.approx(PSNR().score(image, reference=reference[cell["seed"]]))
        assert row.score_sharpness == pytest.approx(Sharpness().score(image))
        assert row.score_colourfulness == pytest.approx(Colourfulness().score(image))
        assert by_cell[row.reference_id] == {**cell, "steps": 50}
    at_fifty = frame[frame["steps"] == 50]
    assert (at_fifty["score_ssim"] == 1.0).all() and (at_fifty["score_psnr"] == math.inf).all()
    for _, one_seed in frame.sort_values("steps").groupby("seed"):
        assert one_seed["score_ssim"].is_monotonic_increasing  # closer to the reference with every step
    assert str(frame.attrs["scoring"]) == "24 scores computed, 0 already stored"
    # The run log holds them: its DataFrame has the columns, metrics() says against what and by which version.
    assert {"score_ssim", "score_psnr", "score_sharpness", "score_colourfulness"} <= set(runs.df.columns)
    stored = runs.metrics(metric="ssim")
    sha = dict(zip(frame["id"], frame["image_sha256"], strict=True))
    expected = {i: sha[int(r)] for i, r in zip(frame["id"], frame["reference_id"], strict=True)}
    assert dict(zip(stored["run_id"], stored["reference"], strict=True)) == expected
    assert set(stored["scorer_version"]) == {SSIM.version}
    assert set(runs.metrics(metric="sharpness")["reference"]) == {""}


def test_nothing_is_computed_twice_however_it_is_asked(runs):
    log_cells(runs, "fox", CELLS)
    counting = Counting()
    first = score_sweep(runs, "fox", [counting])
    assert counting.images == 6 and first.attrs["scoring"].computed == 6
    again = score_sweep(runs, "fox", [counting])
    assert counting.images == 6 and str(again.attrs["scoring"]) == "0 scores computed, 6 already stored"
    # Several threads and background jobs at once, on a sweep that grew: each new image is scored once.
    log_cells(runs, "fox", grid(steps=[10, 30, 50], seed=[3]))
    futures = [score_sweep_in_background(runs, "fox", [counting]) for _ in range(3)]
    threads = [threading.Thread(target=score_sweep, args=(runs, "fox", [counting])) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    frames = [future.result(timeout=60) for future in futures]
    assert counting.images == 9
    assert all(frame["score_sharpness"].notna().sum() == 9 for frame in frames)


def test_a_background_job_returns_a_future_of_the_scored_frame(runs):
    log_cells(runs, "fox", CELLS)
    done = threading.Event()
    counting = Counting()
    future = score_sweep_in_background(runs, "fox", ["ssim", counting])
    future.add_done_callback(lambda _: done.set())
    frame = future.result(timeout=60)
    assert done.wait(5)
    assert frame["score_ssim"].notna().all() and "score_psnr" not in frame.columns
    assert [name.split("_")[0] for name in counting.threads] == ["kandinsky-nb-scoring"]  # not the caller's thread
    with pytest.raises(ConfigurationError, match=r"scorer='fid': not a download-free scorer"):
        score_sweep_in_background(runs, "fox", ["fid"])  # argument errors come now, not later in the future


def test_a_running_sweep_scores_against_its_planned_reference_only(runs):
    definition = {"base": {}, "axes": {"steps": [10, 30, 50], "seed": [1, 2]}}
    log_cells(runs, "fox", grid(steps=[10, 30], seed=[1, 2]), register=definition)
    counting = Counting()
    early = score_sweep(runs, "fox", ["ssim", counting])
    assert early["score_ssim"].isna().all() and early["reference_id"].isna().all()
    assert early["score_sharpness"].notna().all()
    assert early.attrs["scoring"].waiting_for_reference == 4
    log_cells(runs, "fox", grid(steps=[50], seed=[1, 2]))
    late = score_sweep(runs, "fox", ["ssim", counting])
    assert late["score_ssim"].notna().all() and late.attrs["scoring"].waiting_for_reference == 0
    assert counting.images == 6  # the first four were not scored again


def test_an_unreadable_image_is_skipped_and_scored_once_restored(runs):
    ids = log_cells(runs, "fox", CELLS)
    path = runs.image_path(runs.get(ids[0])[0])
    saved = path.read_bytes()
    path.unlink()
    frame = score_sweep(runs, "fox", ["sharpness"])
    assert frame.attrs["scoring"].unreadable == [ids[0]]
    assert frame.set_index("id")["score_sharpness"].isna().to_dict() == {i: i == ids[0] for i in ids}
    path.write_bytes(saved)
    frame = score_sweep(runs, "fox", ["sharpness"])
    assert frame["score_sharpness"].notna().all() and frame.attrs["scoring"].computed == 1


def test_failed_runs_are_kept_but_not_scored(runs):
    from kandinsky_nb.errors import TaskError
    from kandinsky_nb.types import ImageInferenceRequest

    log_cells(runs, "fox", CELLS)
    request = ImageInferenceRequest(positivePrompt=PROMPT, width=1024, height=1024, steps=20, seed=1)
    runs.record_failure(request, TaskError("boom", code="x"), engine="priced", demo=False, sweep_id="fox")
    frame = score_sweep(runs, "fox", ["ssim"])
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and failed["score_ssim"].isna().all() and failed["reference_id"].isna().all()


def test_wrong_arguments_say_what_to_pass(runs):
    with pytest.raises(ConfigurationError, match=r"sweep_id='nope': no runs of that sweep in .*runs.db; run it first"):
        score_sweep(runs, "nope")
    log_cells(runs, "fox", CELLS[:1])
    with pytest.raises(ConfigurationError, match=r"scorers: 'sharpness' is given twice; one scorer per metric"):
        score_sweep(runs, "fox", ["sharpness", Counting()])


def test_clip_score_is_stored_against_the_prompt(runs, tiny_clip):
    prompts = [{"steps": 20, "prompt": "a red fox in snow"}, {"steps": 20, "prompt": "a bowl of ramen", "seed": 2}]
    ids = log_cells(runs, "clip", prompts)
    scorer = CLIPScore(tiny_clip, device="cpu")
    frame = score_sweep(runs, "clip", [scorer])
    stored = runs.metrics(metric="clip_score")
    assert sorted(stored["reference"]) == ["a bowl of ramen", "a red fox in snow"]
    assert set(stored["scorer_version"]) == {scorer.version} and "random-weights" in scorer.version
    by_id = frame.set_index("id")["score_clip_score"]
    for run_id, cell in zip(ids, prompts, strict=True):
        assert by_id[run_id] == pytest.approx(scorer.score(converging(cell), prompt=cell["prompt"]), abs=1e-4)


@pytest.mark.slow
def test_a_demo_sweep_scores_and_says_its_scores_measure_noise(demo_backend, tmp_path):
    session = kandinsky_nb.Session(demo_backend, home=tmp_path / "home")
    try:
        plan = session.sweep(PROMPT, name="demo-fox", steps=[10, 20], seed=[1, 2])
        plan.run(progress=False)
        frame = score_sweep(session, "demo-fox")
    finally:
        session.runs.close()  # the backend is shared by the whole test session: Session.close() would close it
    assert len(frame) == 4 and frame["score_ssim"].notna().all() and frame["demo"].all()
    assert (frame.loc[frame["steps"] == 20, "score_ssim"] == 1.0).all()
    advice = recommend(frame, "ssim", 0.5)
    assert str(advice).endswith(f"({DEMO_NOTE})") and "of the 20-step image" in str(advice)


def test_any_rows_can_be_scored_such_as_a_gallery_of_single_runs(runs):
    log_cells(runs, "fox", CELLS[:3])
    gallery = runs.df.tail(2)
    report = score_runs(runs, gallery, ["sharpness", "colourfulness"])
    assert report.computed == 4 and set(report.against) == {"sharpness", "colourfulness"}
    frame = runs.df
    assert frame["score_sharpness"].notna().tolist() == [False, True, True]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_the_background_thread_yields_the_cpu_to_generation(runs):
    log_cells(runs, "fox", CELLS[:1])

    class Niceness(Sharpness):
        def score(self, image, *, reference=None, prompt=None):
            self.seen = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return super().score(image)

    probe = Niceness()
    score_sweep_in_background(runs, "fox", [probe]).result(timeout=60)
    assert probe.seen >= 10 and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 10
