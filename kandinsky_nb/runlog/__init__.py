"""The durable run log: SQLite rows, content-addressed image files, scores of those images, a DataFrame view,
Parquet/CSV export.

- :mod:`.store`: :class:`RunLog`, the one class that reads and writes the database;
- :mod:`.migrations`: the schema, as named migrations applied once each;
- :mod:`.files`: image files written once by sha256, with their request parameters embedded;
- :mod:`.thumbs`: thumbnails made once per image content and kept beside the images (the Gallery's tiles);
- :mod:`.metrics`: scores as run-log data (the ``metrics`` table, the ``score_<metric>`` columns of ``RunLog.df``).
"""

from .files import embed_params, read_embedded_params
from .metrics import METRIC_COLUMN_PREFIX, metric_column
from .migrations import MIGRATIONS, migrate
from .store import DB_NAME, STATUSES, UNANSWERED, RunLog

__all__ = [
    "DB_NAME",
    "METRIC_COLUMN_PREFIX",
    "MIGRATIONS",
    "STATUSES",
    "UNANSWERED",
    "RunLog",
    "embed_params",
    "metric_column",
    "migrate",
    "read_embedded_params",
]
