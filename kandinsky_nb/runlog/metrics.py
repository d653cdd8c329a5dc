"""Scores as run-log data: the SQL of the ``metrics`` table and of the ``score_<metric>`` columns of ``RunLog.df``.

A score belongs to an image's content, not to a run: the table (migration ``m004_metrics``) is keyed on
``(image_sha256, metric, reference, scorer_version)``, so the same image is never scored twice by the same scorer
against the same reference, and runs that share an image share its score.

- ``metric``: a name of lowercase letters, digits and underscores (``ssim``, ``psnr``, ``sharpness``, ``clip_score``);
  it becomes the DataFrame column ``score_<metric>``.
- ``reference``: what a comparison was made against; for a comparison scorer, the reference image's sha256 (so the
  cache follows content), ``''`` for a scorer that needs no reference.
- ``scorer_version``: the scorer's own version; bump it when its algorithm changes, and the new values are stored
  beside the old ones instead of silently mixing with them.
- ``value``: a float, or None for "scored, no value" (the scorer could not score this image), so it is not retried.
  Infinity is kept (the PSNR of identical images); NaN is stored as None.

:class:`~kandinsky_nb.runlog.RunLog` runs these statements (``record_metrics``, ``missing_metrics``, ``metrics`` and
the ``score_*`` columns of ``df``); this module holds the SQL and the checks of a caller's rows, and does no I/O of its
own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

from ..errors import RunLogError
from .frame import text_array

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

__all__ = ["METRIC_COLUMN_PREFIX", "metric_column"]

METRIC_COLUMN_PREFIX = "score_"
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ROW_FIELDS = ("run_id", "metric", "value", "scorer_version", "reference")

# One statement per score: the image's sha256 comes from its run, in the same statement, so a score can never be
# filed under the wrong image. RETURNING says whether the run had an image at all (no row: nothing was stored).
# The INSERT ... SELECT needs its WHERE clause for SQLite to parse the upsert that follows it.
UPSERT_SQL = """
    INSERT INTO metrics (image_sha256, metric, reference, scorer_version, value, run_id, computed_utc)
    SELECT image_sha256, :metric, :reference, :scorer_version, :value, id, :computed_utc
    FROM runs WHERE id = :run_id AND image_sha256 IS NOT NULL
    ON CONFLICT (image_sha256, metric, reference, scorer_version)
    DO UPDATE SET value = excluded.value, computed_utc = excluded.computed_utc
    RETURNING image_sha256
"""

# Of the wanted (run, reference) pairs, one run per (image, reference) with no score yet: scoring it covers every
# run with the same image. The pairs travel as one JSON parameter, so a 100k-run sweep stays under SQLite's limit on
# bound variables.
MISSING_SQL = """
    WITH wanted AS (
        SELECT json_extract(value, '$[0]') AS run_id, json_extract(value, '$[1]') AS reference FROM json_each(:wanted)
    )
    SELECT MIN(runs.id) AS run_id
    FROM wanted JOIN runs ON runs.id = wanted.run_id
    WHERE runs.image_sha256 IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM metrics
        WHERE metrics.image_sha256 = runs.image_sha256 AND metrics.metric = :metric
          AND metrics.reference = wanted.reference AND metrics.scorer_version = :scorer_version
    )
    GROUP BY runs.image_sha256, wanted.reference
    ORDER BY run_id
"""


def metric_column(metric: str) -> str:
    """The ``RunLog.df`` column that holds a metric (``ssim`` -> ``score_ssim``)."""
    return METRIC_COLUMN_PREFIX + check_metric_name(metric)


def check_metric_name(metric: object) -> str:
    if not isinstance(metric, str) or not _METRIC_NAME.fullmatch(metric):
        raise RunLogError(
            f"metric name {metric!r} is not allowed: a metric becomes the DataFrame column "
            f"'{METRIC_COLUMN_PREFIX}<metric>', so it must be lowercase letters, digits and underscores, starting "
            "with a letter; use e.g. 'ssim' or 'clip_score'"
        )
    return metric


def upsert_params(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, computed_utc: str) -> list[dict[str, Any]]:
    """The named parameters of :data:`UPSERT_SQL` for a caller's rows, each checked before anything is written."""
    records = rows.to_dict("records") if hasattr(rows, "to_dict") and hasattr(rows, "columns") else rows
    params = []
    for number, row in enumerate(records):
        missing = [name for name in ("run_id", "metric", "value", "scorer_version") if name not in row]
        unknown = sorted(set(row) - set(_ROW_FIELDS))
        if missing or unknown:
            raise RunLogError(
                f"score row {number} has {'no ' + ', '.join(missing) if missing else 'unknown fields ' + str(unknown)}"
                f": a row holds {', '.join(_ROW_FIELDS)} (reference optional, default ''); pass e.g. "
                "{'run_id': 12, 'metric': 'ssim', 'value': 0.97, 'scorer_version': '1', 'reference': '<sha256>'}"
            )
        params.append(
            {
                "run_id": _run_id(row["run_id"], number),
                "metric": check_metric_name(row["metric"]),
                "value": _value(row["value"], number),
                "scorer_version": _text("scorer_version", row["scorer_version"], number, allow_empty=False),
                "reference": _text("reference", row.get("reference", ""), number, allow_empty=True),
                "computed_utc": computed_utc,
            }
        )
    return params


def missing_params(
    run_ids: Iterable[int], metric: str, scorer_version: str, reference: str | Mapping[int, str]
) -> dict[str, Any]:
    """The named parameters of :data:`MISSING_SQL`."""
    wanted = []
    for run_id in run_ids:
        run_id = _run_id(run_id, None)
        if isinstance(reference, Mapping):
            if run_id not in reference:
                raise RunLogError(
                    f"run {run_id} has no entry in reference (a mapping of run id to reference): give every run id "
                    "its reference, or pass one reference text for all"
                )
            text = _text("reference", reference[run_id], None, allow_empty=True)
        else:
            text = _text("reference", reference, None, allow_empty=True)
        wanted.append([run_id, text])
    return {
        "wanted": json.dumps(wanted),
        "metric": check_metric_name(metric),
        "scorer_version": _text("scorer_version", scorer_version, None, allow_empty=False),
    }


def long_form_query(
    run_ids: Iterable[int] | None,
    metric: str | Sequence[str] | None,
    reference: str | None,
    scorer_version: str | None,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of ``RunLog.metrics``: one row per (run, stored score), filtered."""
    conditions, params = [], {}
    if run_ids is not None:
        conditions.append("runs.id IN (SELECT value FROM json_each(:run_ids))")
        params["run_ids"] = json.dumps([_run_id(run_id, None) for run_id in run_ids])
    if metric is not None:
        names = [metric] if isinstance(metric, str) else list(metric)
        conditions.append("metrics.metric IN (SELECT value FROM json_each(:metrics))")
        params["metrics"] = json.dumps([check_metric_name(name) for name in names])
    if reference is not None:
        conditions.append("metrics.reference = :reference")
        params["reference"] = _text("reference", reference, None, allow_empty=True)
    if scorer_version is not None:
        conditions.append("metrics.scorer_version = :scorer_version")
        params["scorer_version"] = _text("scorer_version", scorer_version, None, allow_empty=False)
    sql = (
        "SELECT runs.id AS run_id, metrics.image_sha256, metrics.metric, metrics.reference, metrics.scorer_version, "
        "metrics.value, metrics.computed_utc FROM metrics JOIN runs ON runs.image_sha256 = metrics.image_sha256"
        + (" WHERE " + " AND ".join(conditions) if conditions else "")
        + " ORDER BY runs.id, metrics.metric, metrics.computed_utc, metrics.rowid"
    )
    return sql, params


# The names of the stored metrics, one per score_<metric> column. Each step seeks the next name in the metrics_newest
# index (led by metric), so a million scores of three metrics cost four index seeks, not a scan.
METRIC_NAMES_SQL = """
    WITH RECURSIVE names(metric) AS (
        SELECT MIN(metric) FROM metrics
        UNION ALL
        SELECT (SELECT MIN(metric) FROM metrics WHERE metric > names.metric) FROM names WHERE names.metric IS NOT NULL
    )
    SELECT metric FROM names WHERE metric IS NOT NULL
"""


def scores_sql(condition: str = "") -> str:
    """Every stored score of the images of the runs that ``condition`` selects (all runs when empty), in the order of
    the ``metrics_newest`` index: by metric, then image, then computed time and rowid, so the newest score of each
    (metric, image) is the last of its group. For the whole log that is a walk along the index (no sort); for a
    condition, one primary-key lookup per selected image."""
    images = f" WHERE image_sha256 IN (SELECT runs.image_sha256 FROM runs WHERE {condition})" if condition else ""
    return f"SELECT metric, image_sha256, value FROM metrics{images} ORDER BY metric, image_sha256, computed_utc, rowid"


def arrow_scores_sql(condition: str = "") -> str:
    """:func:`scores_sql` behind one row of typed constants (text, text, real), for the Arrow reader, which types a
    column by its first batch: 50,000 NULL values first would type ``value`` as an integer and refuse the scores
    after them. :func:`score_cells_of_arrow` drops that row (no metric is named '')."""
    return f"SELECT '' AS metric, '' AS image_sha256, 0.0 AS value UNION ALL SELECT * FROM ({scores_sql(condition)})"


def score_cells(rows: Sequence[tuple[Any, ...]]) -> np.ndarray:
    """The rows of :func:`scores_sql` as read by the sqlite3 module, as a (rows x 3) object matrix (numpy's C loop)."""
    import numpy as np

    return np.fromiter(chain.from_iterable(rows), dtype=object, count=3 * len(rows)).reshape(len(rows), 3)


def score_cells_of_arrow(table: pa.Table) -> np.ndarray:
    """The result of :func:`arrow_scores_sql` as the Arrow reader returns it (typed first row dropped), as the matrix
    :func:`score_cells` makes."""
    import numpy as np

    if table.num_rows == 0 or table.column(0)[0].as_py() != "":
        raise RunLogError(
            "the Arrow reader did not return the scores' typed first row first, so their types cannot be trusted; "
            "read with RunLog(home, reader='sqlite3')."
        )
    table = table.slice(1)
    cells = np.empty((table.num_rows, 3), dtype=object)
    if table.num_rows:
        for number in range(3):
            cells[:, number] = table.column(number).to_numpy(zero_copy_only=False)
    return cells


def with_metric_columns(frame: pd.DataFrame, metrics: Sequence[str], cells: np.ndarray) -> pd.DataFrame:
    """``frame`` (rows of ``runs``) with one float column ``score_<metric>`` per name in ``metrics``, holding the
    newest score of the row's image from ``cells`` (the result of :func:`scores_sql`, as :func:`score_cells` or
    :func:`score_cells_of_arrow` make it); NaN where it has none.

    "Newest" is the last computed, then the last stored: a bumped scorer version takes over an image's column as soon
    as it has scored that image, and ``RunLog.metrics`` still lists every version and reference. Vectorised and keyed
    by integers: the frame's images and the scored images are numbered together in one factorize, and every score
    lands in an (image x metric) table by index. This replaced a pivot that hashed every stored score's (image,
    metric) pair twice and then joined on the image text (benchmarks/RESULTS.md measures both in one run).
    """
    import numpy as np
    import pandas as pd

    if not metrics:
        return frame
    columns = {metric_column(name): number for number, name in enumerate(metrics)}
    if not len(cells):
        for column in columns:
            frame[column] = np.nan
        return frame
    metric, image = cells[:, 0], cells[:, 1]
    # The rows come grouped by (metric, image), newest last: keep the last of each group.
    newest = np.ones(len(cells), dtype=bool)
    newest[:-1] = (metric[1:] != metric[:-1]) | (image[1:] != image[:-1])
    metric, image, value = metric[newest], image[newest], cells[newest, 2].astype(np.float64)
    # Each metric's scores are one contiguous run: its column number, repeated over the run.
    starts = np.flatnonzero(np.concatenate([[True], metric[1:] != metric[:-1]]))
    which = np.repeat(
        [columns[metric_column(name)] for name in metric[starts]], np.diff(np.append(starts, len(metric)))
    )
    # One number per distinct image, the frame's first (-1: a row without an image, which reads the NaN last row).
    both = pd.concat([frame["image_sha256"], pd.Series(text_array(image))], ignore_index=True)
    codes, images = pd.factorize(both)
    table = np.full((len(images) + 1, len(metrics)), np.nan)
    table[codes[len(frame) :], which] = value
    for column, number in columns.items():
        frame[column] = table[codes[: len(frame)], number]
    return frame


def typed_long_form(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    frame["computed_utc"] = pd.to_datetime(frame["computed_utc"], utc=True, format="ISO8601")
    frame["value"] = frame["value"].astype(float)
    return frame


def _run_id(value: object, number: int | None) -> int:
    # bool is an Integral; True as a run id is a caller's mistake, not run 1.
    if isinstance(value, bool) or not isinstance(value, Integral):
        where = f"score row {number}: " if number is not None else ""
        raise RunLogError(
            f"{where}run_id {value!r} is not a run id: pass the integer id of a row of runs (RunLog.df['id'])"
        )
    return int(value)


def _value(value: object, number: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise RunLogError(
            f"score row {number}: value {value!r} is not a number: pass a float, or None when the scorer could not "
            "score this image"
        )
    number_value = float(value)
    return None if math.isnan(number_value) else number_value


def _text(field: str, value: object, number: int | None, *, allow_empty: bool) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        where = f"score row {number}: " if number is not None else ""
        need = "a string ('' when there is none)" if allow_empty else "a non-empty string, e.g. '1'"
        raise RunLogError(f"{where}{field} {value!r} is not allowed: pass {need}")
    return value
