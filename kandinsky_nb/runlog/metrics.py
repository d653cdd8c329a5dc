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
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

from ..errors import RunLogError

if TYPE_CHECKING:
    import pandas as pd

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


def score_columns_sql(metrics: Sequence[str]) -> list[str]:
    """One ``score_<metric>`` column per metric for the ``SELECT`` of ``runs``: the newest score of the row's image
    (the last computed, then the last stored), NULL where it has none.

    Each is one lookup in the ``metrics_newest`` index (metric, image, computed time; the rowid breaks ties), which
    hands the newest entry first: no sort, no pivot, nothing read for images the query does not return. This
    replaced a pandas pivot of every stored score (7 to 8 s for 3 metrics at 100,000 rows on a loaded machine; see
    benchmarks/RESULTS.md). A bumped scorer version takes over an image's column as soon as it has scored that
    image; ``RunLog.metrics`` still lists every version and reference.
    """
    return [
        "(SELECT value FROM metrics WHERE metrics.image_sha256 = runs.image_sha256 "
        f"AND metrics.metric = '{check_metric_name(name)}' "
        f'ORDER BY metrics.computed_utc DESC, metrics.rowid DESC LIMIT 1) AS "{metric_column(name)}"'
        for name in metrics
    ]


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
