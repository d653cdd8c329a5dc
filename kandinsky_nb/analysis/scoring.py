"""Scoring a sweep's images into the run log: lazily, cached, and in a background thread if you like.

:func:`score_sweep` scores every image of a sweep that has no stored score yet for each scorer (its image, metric,
reference and scorer version: :meth:`RunLog.missing_metrics` decides), stores the new scores with
:meth:`RunLog.record_metrics` a chunk at a time, and returns the sweep's rows with one ``score_<metric>`` column per
scorer (each against this sweep's references) and a ``reference_id`` column. Calling it again computes nothing
that is stored; a sweep that grew scores only its new images.

:func:`score_sweep_in_background` runs the same on one shared worker thread and returns a
:class:`concurrent.futures.Future`, so a notebook, panel or running sweep is not held up. Scoring jobs for one run
log never overlap (a lock per log), so two requests for the same sweep never compute one score twice.

The comparison scorers (SSIM, PSNR) compare each image with its reference (see
:func:`kandinsky_nb.analysis.quality.reference_runs`); while a sweep runs, an image whose planned reference has not
been generated yet waits (``waiting_for_reference``) instead of being compared with a stand-in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigurationError
from ..quality import Scorer, as_rgb, download_free_scorers, scorer_named
from ..runlog import RunLog, metric_column
from .quality import REFERENCE_GROUP, planned_reference, reference_runs

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ScoringReport", "score_runs", "score_sweep", "score_sweep_in_background"]

# Images decoded and scored per chunk; each chunk's scores are stored in one transaction, so progress survives an
# interrupt and a panel reading the log sees scores arrive while the rest are computed.
CHUNK = 128


class _HasRunLog(Protocol):
    runs: RunLog


@dataclass
class ScoringReport:
    """What one scoring pass did: scores computed and stored, scores already stored, images that could not be read,
    images whose reference has not run yet, and per metric what each run's score is computed against (as the run
    log's ``reference`` column holds it: the reference image's sha256, the prompt, or '')."""

    computed: int = 0
    cached: int = 0
    unreadable: list[int] = field(default_factory=list)
    waiting_for_reference: int = 0
    against: dict[str, dict[int, str]] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        extra = f", {len(self.unreadable)} image files unreadable" if self.unreadable else ""
        wait = f", {self.waiting_for_reference} waiting for their reference" if self.waiting_for_reference else ""
        return f"{self.computed} scores computed, {self.cached} already stored{extra}{wait}"


def _run_log(source: RunLog | _HasRunLog) -> RunLog:
    return source if isinstance(source, RunLog) else source.runs


def _scorers(scorers: Sequence[Scorer | str] | None) -> list[Scorer]:
    chosen = (
        download_free_scorers()
        if scorers is None
        else [s if isinstance(s, Scorer) else scorer_named(s) for s in scorers]
    )
    metrics = [scorer.metric for scorer in chosen]
    doubled = sorted({metric for metric in metrics if metrics.count(metric) > 1})
    if doubled:
        raise ConfigurationError(
            f"scorers: {doubled[0]!r} is given twice; one scorer per metric in a call (score twice with different "
            "weights in two calls, and read both with RunLog.metrics)"
        )
    return chosen


def _references_for(
    scorer: Scorer, ids: Sequence[int], reference_of: pd.Series, sha: Mapping[int, str], prompt: Mapping[int, str]
) -> dict[int, str]:
    """What each run's score is computed against, as the run log stores it: the reference image's sha256, the
    prompt, or '' (runs whose reference has not run yet are left out)."""
    if scorer.against == "reference":
        known = reference_of.dropna()
        return {i: sha[int(known[i])] for i in ids if i in known.index}
    if scorer.against == "prompt":
        return {i: prompt[i] for i in ids if prompt.get(i)}
    return dict.fromkeys(ids, "")


def _read(path: Any) -> np.ndarray | None:
    """An image file as an RGB array, or None when it is gone or damaged (left unscored, so a restored file is
    scored next time)."""
    try:
        return as_rgb(os.fspath(path))
    except (OSError, ValueError):
        return None


_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()


def _lock_for(runs: RunLog) -> threading.RLock:
    """The lock of one run-log file (re-entrant: score_sweep holds it around score_runs)."""
    with _locks_guard:
        return _locks.setdefault(str(runs.path), threading.RLock())


def score_runs(
    runs: RunLog,
    frame: pd.DataFrame,
    scorers: Sequence[Scorer | str] | None = None,
    *,
    reference_of: pd.Series | None = None,
) -> ScoringReport:
    """Score the image rows of ``frame`` (any rows of ``runs``, e.g. a gallery's) that lack a stored score and store
    the new scores. ``reference_of`` maps run id to reference run id (default:
    :func:`~kandinsky_nb.analysis.quality.reference_runs` of ``frame``)."""
    chosen = _scorers(scorers)
    with _lock_for(runs):  # one scoring pass per run log at a time: what one stores, the next finds stored
        return _score_runs(runs, frame, chosen, reference_of)


def _score_runs(
    runs: RunLog, frame: pd.DataFrame, chosen: Sequence[Scorer], reference_of: pd.Series | None
) -> ScoringReport:
    images = frame[(frame["status"] == "ok") & frame["image_sha256"].notna()]
    ids = [int(i) for i in images["id"]]
    reference_of = reference_runs(frame) if reference_of is None else reference_of
    sha = dict(zip(ids, images["image_sha256"], strict=True))
    prompt = dict(zip(ids, images["prompt"], strict=True))
    path = dict(zip(ids, images["image_path"], strict=True))
    path_of_sha = {digest: path[run_id] for run_id, digest in sha.items()}
    report = ScoringReport()
    against = report.against
    todo: dict[str, set[int]] = {}
    for scorer in chosen:
        scored_against = against[scorer.metric] = _references_for(scorer, ids, reference_of, sha, prompt)
        if scorer.against == "reference":
            report.waiting_for_reference = max(report.waiting_for_reference, len(ids) - len(scored_against))
        missing = runs.missing_metrics(scored_against, scorer.metric, scorer.version, scored_against)
        todo[scorer.metric] = set(missing)
        report.cached += len({(sha[i], scored_against[i]) for i in scored_against}) - len(missing)
    pending = sorted(set().union(*todo.values()))
    # References are few (one per seed, prompt and size) and used by many images: decoded once for the whole pass.
    reference_images: dict[str, np.ndarray | None] = {}

    def reference_image(digest: str) -> np.ndarray | None:
        if digest not in reference_images:
            reference_images[digest] = _read(path_of_sha[digest])
        return reference_images[digest]

    for start in range(0, len(pending), CHUNK):
        chunk = pending[start : start + CHUNK]
        decoded = {run_id: _read(path[run_id]) for run_id in chunk}
        report.unreadable.extend(run_id for run_id in chunk if decoded[run_id] is None)
        rows: list[dict[str, Any]] = []
        for scorer in chosen:
            scored_against = against[scorer.metric]
            kept = [i for i in chunk if i in todo[scorer.metric] and decoded[i] is not None]
            references: list[np.ndarray | None] = [None] * len(kept)
            if scorer.against == "reference":
                pairs = [(i, reference_image(scored_against[i])) for i in kept]
                # An image whose reference file is unreadable waits for it, like one whose reference has not run.
                kept = [i for i, reference in pairs if reference is not None]
                references = [reference for _, reference in pairs if reference is not None]
            if not kept:
                continue
            values = scorer.score_many(
                [decoded[i] for i in kept],  # type: ignore[misc]
                references=references,
                prompts=[prompt[i] for i in kept],
            )
            rows.extend(
                {
                    "run_id": run_id,
                    "metric": scorer.metric,
                    "value": value,
                    "scorer_version": scorer.version,
                    "reference": scored_against[run_id],
                }
                for run_id, value in zip(kept, values, strict=True)
            )
        if rows:
            report.computed += runs.record_metrics(rows)
    return report


def _exact_scores(
    runs: RunLog, frame: pd.DataFrame, scorers: Sequence[Scorer], against: Mapping[str, Mapping[int, str]]
) -> pd.DataFrame:
    """The frame with each scorer's column holding exactly this scorer version's score against this sweep's
    reference (``runs.df`` shows the newest score of any version or reference)."""
    import pandas as pd

    frame = frame.copy()
    ids = [int(i) for i in frame["id"]]
    for scorer in scorers:
        stored = runs.metrics(ids, scorer.metric, scorer_version=scorer.version)
        expected = pd.Series(against[scorer.metric], dtype=object)
        wanted = stored[stored["reference"].to_numpy() == expected.reindex(stored["run_id"].to_numpy()).to_numpy()]
        values = wanted.drop_duplicates("run_id", keep="last").set_index("run_id")["value"]
        frame[metric_column(scorer.metric)] = frame["id"].map(values).astype(float)
    return frame


def score_sweep(
    source: RunLog | _HasRunLog,
    sweep_id: str,
    scorers: Sequence[Scorer | str] | None = None,
    *,
    by: Sequence[str] = REFERENCE_GROUP,
) -> pd.DataFrame:
    """Score a sweep's images that have no stored score yet and return the sweep's rows with scores.

    ``source``: a Session (its run log) or a RunLog. ``scorers``: Scorer objects or download-free metric names
    (default: SSIM, PSNR, sharpness, colourfulness). ``by``: the columns whose rows share a reference image.
    The frame has a ``score_<metric>`` column per scorer, ``reference_id`` (the run each row was compared with) and
    ``frame.attrs["scoring"]``, the :class:`ScoringReport` of this pass."""
    runs = _run_log(source)
    chosen = _scorers(scorers)
    with _lock_for(runs):
        frame = runs.dataframe("sweep_id = ?", (sweep_id,))
        if frame.empty:
            raise ConfigurationError(
                f"sweep_id={sweep_id!r}: no runs of that sweep in {runs.path}; run it first, or list the sweeps with "
                "`kandinsky-nb runs list`"
            )
        reference_of = reference_runs(frame, by=by, planned=planned_reference(runs.sweep_definition(sweep_id)))
        report = score_runs(runs, frame, chosen, reference_of=reference_of)
        frame = runs.dataframe("sweep_id = ?", (sweep_id,))
    frame["reference_id"] = frame["id"].map(reference_of).astype("Int64")
    frame = _exact_scores(runs, frame, chosen, report.against)
    # pandas deep-copies attrs into every derived frame: keep the report small (reference_id says the same per row).
    frame.attrs["scoring"] = dataclasses.replace(report, against={})
    return frame


_executor: ThreadPoolExecutor | None = None
_executor_guard = threading.Lock()


def _background() -> ThreadPoolExecutor:
    global _executor
    with _executor_guard:
        if _executor is None:
            # One worker: scoring jobs queue instead of competing with each other (and with a running sweep) for
            # the CPU; numpy and scikit-image release the GIL for the heavy parts, so the sweep's threads keep going.
            _executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="kandinsky-nb-scoring", initializer=_yield_to_generation
            )
        return _executor


def _yield_to_generation() -> None:
    """Lower the scoring thread's CPU priority where the OS allows it per thread (Linux): when a sweep and scoring
    compete for cores, the sweep's pipeline threads win and scoring uses what is left."""
    # Only Linux takes a thread id here; elsewhere the same call would name a process, so scoring keeps its priority.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def score_sweep_in_background(
    source: RunLog | _HasRunLog,
    sweep_id: str,
    scorers: Sequence[Scorer | str] | None = None,
    *,
    by: Sequence[str] = REFERENCE_GROUP,
) -> Future[pd.DataFrame]:
    """:func:`score_sweep` on a background thread: returns at once with a Future of the scored frame
    (``future.result()`` waits for it; ``future.add_done_callback`` lets a panel refresh when it is done)."""
    chosen = _scorers(scorers)  # argument errors now, in the caller's thread, not later in the Future
    return _background().submit(score_sweep, source, sweep_id, chosen, by=by)
