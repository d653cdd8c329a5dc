"""Typed DataFrames from the ``runs`` table without Python per row: what ``RunLog.df`` and ``RunLog.query`` return.

Each column's dtype comes from the schema the migrations built (``PRAGMA table_info``), not from the values one read
happens to return, so a column keeps its dtype whether or not it holds a NULL today:

=========================  ==========================================================================
declared type              dtype
=========================  ==========================================================================
INTEGER NOT NULL           ``int64`` (``demo``: ``bool``)
INTEGER (nullable)         ``Int64`` (pandas' nullable integer: a missing seed is ``<NA>``, not 7.0)
REAL                       ``float64`` (NULL is NaN)
TEXT                       pandas' default string dtype (``str`` from pandas 3); ``created_utc`` and
                           ``finished_utc``: ``datetime64[us, UTC]``
=========================  ==========================================================================

Rows are fetched in chunks and each chunk is turned into typed column arrays at once (a C loop per column), so at
most one chunk of Python row objects is alive: a million-row log peaks at the frame plus one chunk, not at a million
row tuples. The cursor is the caller's (:class:`~kandinsky_nb.runlog.RunLog` opens it); this module does no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import RunLogError

if TYPE_CHECKING:
    import sqlite3

    import numpy as np
    import pandas as pd

__all__ = ["CHUNK_ROWS", "column_kinds", "read_frame", "select_sql", "text_array"]

# Rows per fetch: large enough that the per-chunk work is amortised, small enough that a chunk of row tuples (about
# 2 KiB a row) stays far below the frame it becomes.
CHUNK_ROWS = 50_000
# Columns whose meaning the declared type does not carry: ISO 8601 texts that are times, a 0/1 integer that is a flag.
TIME_COLUMNS = ("created_utc", "finished_utc")
FLAG_COLUMNS = ("demo",)
# Packs a (width, height) pair into one integer (heights are far below 2**32), so sizes factorize as integers.
_PAIR = 1 << 32


def column_kinds(table_info: Iterable[Sequence[Any]]) -> dict[str, str]:
    """Column name -> kind (``int``, ``nullable_int``, ``float``, ``text``, ``time``, ``flag``) from the rows of
    ``PRAGMA table_info``: (cid, name, type, notnull, default, pk). Declared types follow SQLite's affinity rules."""
    kinds = {}
    for _cid, name, declared, notnull, _default, primary_key in table_info:
        affinity = str(declared).upper()
        if name in TIME_COLUMNS:
            kinds[name] = "time"
        elif name in FLAG_COLUMNS:
            kinds[name] = "flag"
        elif "INT" in affinity:
            kinds[name] = "int" if notnull or primary_key else "nullable_int"
        elif any(word in affinity for word in ("REAL", "FLOA", "DOUB")):
            kinds[name] = "float"
        else:
            kinds[name] = "text"
    return kinds


def select_sql(
    columns: Sequence[str], condition: str = "", *, newest_first: bool = False, limit: int | None = None
) -> str:
    """``SELECT`` of the runs columns in id order (``newest_first``: reversed), filtered and limited."""
    selected = ", ".join(f'runs."{name}"' for name in columns)
    sql = f"SELECT {selected} FROM runs"
    if condition:
        sql += f" WHERE {condition}"
    sql += " ORDER BY runs.id DESC" if newest_first else " ORDER BY runs.id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql


def read_frame(
    cursor: sqlite3.Cursor, kinds: dict[str, str], home: Path, *, chunk_rows: int = CHUNK_ROWS
) -> pd.DataFrame:
    """Every row the executed ``cursor`` returns, as a typed frame with the analysis columns (see
    :func:`with_analysis_columns`). A column missing from ``kinds`` (one the SELECT computed) is read as ``float``."""
    import numpy as np
    import pandas as pd

    names = [description[0] for description in cursor.description]
    chunks = []
    while rows := cursor.fetchmany(chunk_rows):
        # The row tuples flattened into one (rows x columns) object matrix by numpy's C loop (twice as fast as
        # zip(*rows)); each column of it then becomes one typed array.
        cells = np.fromiter(chain.from_iterable(rows), dtype=object, count=len(rows) * len(names))
        matrix = cells.reshape(len(rows), len(names))
        del rows, cells
        chunks.append(
            pd.DataFrame(
                {name: _column(name, kinds.get(name, "float"), matrix[:, number]) for number, name in enumerate(names)}
            )
        )
        del matrix
    if not chunks:
        empty = np.empty(0, dtype=object)
        chunks.append(pd.DataFrame({name: _array(kinds.get(name, "float"), empty) for name in names}))
    return with_analysis_columns(chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True), home)


def with_analysis_columns(frame: pd.DataFrame, home: Path) -> pd.DataFrame:
    """Absolute ``image_path``; ``size`` (``"1280x768"``), ``size_label`` (the model page's name of a supported
    size, else missing) and ``megapixels``, worked out once per distinct size rather than per row."""
    import numpy as np
    import pandas as pd

    relative = frame["image_path"]
    absolute = str(home) + os.sep + relative  # a missing path stays missing
    frame["image_path"] = absolute.where(relative != "", relative)  # and so does an empty one
    width, height = frame["width"], frame["height"]
    # One integer per (width, height) pair; NA where either is missing, which factorize codes as -1.
    codes, keys = pd.factorize(width.astype("Int64") * _PAIR + height.astype("Int64"), use_na_sentinel=True)
    dimensions = [divmod(int(key), _PAIR) for key in keys]
    # A trailing None, picked by code -1.
    text = np.array([f"{w}x{h}" for w, h in dimensions] + [None], dtype=object)
    labels = np.array([_size_label(w, h) for w, h in dimensions] + [None], dtype=object)
    frame["size"] = pd.array(text[codes], dtype=_text_dtype())
    frame["size_label"] = pd.array(labels[codes], dtype=_text_dtype())
    frame["megapixels"] = width.to_numpy("float64", na_value=np.nan) * height.to_numpy("float64", na_value=np.nan) / 1e6
    return frame


def _size_label(width: int, height: int) -> str | None:
    size = spec.size_for(width, height)
    return size.label if size else None


# What each kind reads, for the error that names a value it cannot.
_KIND_READS = {
    "int": "integers",
    "nullable_int": "integers or NULL",
    "float": "numbers or NULL",
    "time": "ISO 8601 times or NULL",
    "flag": "0 or 1",
    "text": "text or NULL",
}


def _column(name: str, kind: str, values: np.ndarray) -> Any:
    try:
        return _array(kind, values)
    except (TypeError, ValueError, OverflowError) as exc:  # pyarrow's errors derive from these too
        raise RunLogError(
            f"the runs column {name!r} holds a value its declared type cannot read ({exc}); it holds "
            f"{_KIND_READS[kind]}. Find the row with SELECT id, {name}, typeof({name}) FROM runs and correct it, or "
            "restore the log from a backup."
        ) from exc


def _array(kind: str, values: np.ndarray) -> Any:
    """One column's values (an object array of Python values, None for NULL) as a typed array, in C loops."""
    import numpy as np
    import pandas as pd

    if kind == "int":
        return values.astype(np.int64)
    if kind == "flag":
        return values.astype(bool)
    if kind == "nullable_int":
        missing = np.equal(values, None)
        numbers = values.copy()
        numbers[missing] = 0
        return pd.arrays.IntegerArray(numbers.astype(np.int64), missing)
    if kind == "float":
        return values.astype(np.float64)  # None becomes NaN
    if kind == "time":
        return pd.to_datetime(values, utc=True, format="ISO8601").as_unit("us").array
    return text_array(values)


def text_array(values: np.ndarray) -> Any:
    """An object array of str (None for NULL) as an array of pandas' own text dtype."""
    import pandas as pd

    text = _text_dtype()
    if getattr(text, "storage", None) == "pyarrow":
        import pyarrow as pa

        # Straight into Arrow (None is null): pandas' own conversion first re-checks every value (2-3x slower), and
        # from_pandas=True would test every value for NaN, which a TEXT column never holds (1.7x slower).
        return pd.array(pa.array(values, type=pa.large_string()), dtype=text)
    return pd.array(values, dtype=text)


@cache
def _text_dtype() -> Any:
    """The dtype pandas itself gives text (``str`` from pandas 3, ``object`` before): the frame reads like any other
    pandas frame of strings, and like ``pandas.read_sql_query`` of the same table."""
    import pandas as pd

    return pd.Series(["text"]).dtype
