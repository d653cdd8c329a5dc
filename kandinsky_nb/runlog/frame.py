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

Two readers build the same frame (same columns, dtypes and values):

- ``adbc`` (:func:`arrow_select_sql`, :func:`frame_from_arrow`), for big reads when the ``fast`` extra is installed:
  the ADBC SQLite driver, in a process of its own (:mod:`kandinsky_nb.runlog.arrow_reader`), copies each value from
  SQLite straight into Arrow buffers in C, so no Python object is made per cell (the ``sqlite3`` module's one object
  per cell was about 55% of the time of a million-row read). The driver infers
  each column's Arrow type from the values of its first batch; a first row of typed constants, read and dropped,
  pins every column to its declared type, so a column that is NULL in the first batch still reads its later text.
- ``sqlite3`` (:func:`read_frame`), the fallback of the standard library: rows are fetched in chunks and each chunk is
  turned into typed column arrays at once (a C loop per column), so at most one chunk of Python row objects is alive.

The cursor and the Arrow batches are the caller's (:class:`~kandinsky_nb.runlog.RunLog` reads them); this module does
no I/O.
"""

from __future__ import annotations

import os
import re
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
    import pyarrow as pa

__all__ = [
    "CHUNK_ROWS",
    "PROTOTYPE_ID",
    "arrow_select_sql",
    "column_kinds",
    "frame_from_arrow",
    "read_frame",
    "select_sql",
    "text_array",
    "type_mismatch_error",
]

# Rows per fetch (sqlite3) and per Arrow batch (ADBC): large enough that the per-chunk work is amortised, small enough that a chunk of row tuples (about
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


# The id of the typed first row of arrow_select_sql: no run has it (ids start at 1), so finding it first proves the row
# that pinned the types is the one dropped.
PROTOTYPE_ID = -1
# A constant of each kind's Arrow type (int64, double, string), for the typed first row.
_PROTOTYPE_VALUES = {"int": "0", "flag": "0", "nullable_int": "0", "float": "0.0", "time": "''", "text": "''"}


def arrow_select_sql(
    columns: Sequence[str],
    kinds: dict[str, str],
    condition: str = "",
    *,
    newest_first: bool = False,
    limit: int | None = None,
) -> str:
    """:func:`select_sql` behind one row of typed constants (id :data:`PROTOTYPE_ID`), for the ADBC reader.

    The driver types a column by the values of its first batch (all NULL reads as int64) and refuses a later value
    of another type, so a text column that is NULL in its first 50,000 rows would fail on its first text. The
    constant row gives every column a value of its declared type up front. SQLite runs a ``UNION ALL`` left to right,
    so that row comes first; :func:`frame_from_arrow` checks it is there before dropping it."""
    prototype = ", ".join(
        f'{PROTOTYPE_ID if name == "id" else _PROTOTYPE_VALUES[kinds.get(name, "float")]} AS "{name}"'
        for name in columns
    )
    rows = select_sql(columns, condition, newest_first=newest_first, limit=limit)
    # The subquery keeps its own ORDER BY and LIMIT: SQLite does not flatten it into the compound.
    return f"SELECT {prototype} UNION ALL SELECT * FROM ({rows})"


def frame_from_arrow(batches: Iterable[pa.RecordBatch] | pa.Table, kinds: dict[str, str], home: Path) -> pd.DataFrame:
    """What :func:`arrow_select_sql` read (a table, or its batches as they arrive), as the same typed frame
    :func:`read_frame` builds (typed first row dropped, analysis columns added). Each batch is converted on its own
    by Arrow's and pandas' C loops, so a reader that streams batches is converting one while the next is read."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(batches, pa.Table):
        batches = batches.to_batches()
    chunks = []
    for number, batch in enumerate(batches):
        if number == 0:
            if batch.num_rows == 0 or batch.column(batch.schema.get_field_index("id"))[0].as_py() != PROTOTYPE_ID:
                raise RunLogError(
                    "the ADBC reader did not return the typed first row first, so the column types cannot be "
                    "trusted; read with RunLog(home, reader='sqlite3') and report the SQLite version "
                    "(SELECT sqlite_version())."
                )
            batch = batch.slice(1)
        chunks.append(
            pd.DataFrame(
                {
                    name: _column(name, kinds.get(name, "float"), batch.column(index), _arrow_array)
                    for index, name in enumerate(batch.schema.names)
                }
            )
        )
    if not chunks:
        raise RunLogError("the ADBC reader returned no batch at all; read with RunLog(home, reader='sqlite3').")
    frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    return with_analysis_columns(frame, home)


def type_mismatch_error(message: str, columns: Sequence[str], kinds: dict[str, str]) -> RunLogError | None:
    """The error naming the column, for the ADBC driver's "Type mismatch in column N" (a value of another type than
    the column's first batch held, met in a later batch); None for any other message."""
    found = re.search(r"Type mismatch in column (\d+)", message)
    if not found or int(found.group(1)) >= len(columns):
        return None
    name = columns[int(found.group(1))]
    return _unreadable(name, kinds.get(name, "float"), message)


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


def _column(name: str, kind: str, values: Any, convert: Any = None) -> Any:
    try:
        return (convert or _array)(kind, values)
    except (TypeError, ValueError, OverflowError) as exc:  # pyarrow's errors derive from these too
        raise _unreadable(name, kind, exc) from exc


def _unreadable(name: str, kind: str, reason: object) -> RunLogError:
    return RunLogError(
        f"the runs column {name!r} holds a value its declared type cannot read ({reason}); it holds "
        f"{_KIND_READS[kind]}. Find the row with SELECT id, {name}, typeof({name}) FROM runs and correct it, or "
        "restore the log from a backup."
    )


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


def _arrow_array(kind: str, values: pa.ChunkedArray) -> Any:
    """One column as Arrow read it, as the typed array :func:`_array` makes of the same values.

    The driver reads a column as int64, double or string (the widest its first batch held), so a value the declared
    type cannot read arrives as another Arrow type and fails the cast, as it fails :func:`_array`."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind in ("int", "flag"):
        if values.null_count:
            raise TypeError(f"{values.null_count} NULL value(s) in a NOT NULL column")
        numbers = pc.cast(values, pa.int64()).to_numpy()
        return numbers.astype(bool) if kind == "flag" else numbers
    if kind == "nullable_int":
        numbers = pc.cast(values, pa.int64())
        missing = numbers.is_null().to_numpy(zero_copy_only=False)
        return pd.arrays.IntegerArray(pc.fill_null(numbers, 0).to_numpy(), missing)
    if kind == "float":
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)  # NULL becomes NaN
    text = pc.cast(values, pa.large_string())
    if kind == "time":
        try:
            # Arrow's ISO 8601 parser, in C (6-7x faster than pandas' at a million rows): it reads every time the log writes
            # (zone offset, microseconds) ...
            return pc.cast(text, pa.timestamp("us", tz="UTC")).to_pandas().array
        except pa.ArrowInvalid:
            # ... and refuses a time without a zone, which pandas' parser (the sqlite3 reader's) reads as UTC.
            return pd.to_datetime(_text_of_arrow(text), utc=True, format="ISO8601").as_unit("us").array
    return _text_of_arrow(text)


def _text_of_arrow(values: pa.ChunkedArray) -> Any:
    """Arrow text (nulls missing) as an array of pandas' own text dtype; zero-copy where that dtype is Arrow's."""
    import pandas as pd

    text = _text_dtype()
    if getattr(text, "storage", None) == "pyarrow":
        return pd.array(values, dtype=text)
    return pd.array(values.to_numpy(zero_copy_only=False), dtype=text)  # pandas 2: Python str objects, None for NULL


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
