"""The durable run log: SQLite rows, content-addressed image files, a DataFrame view, Parquet/CSV export."""

from .files import embed_params, read_embedded_params
from .migrations import MIGRATIONS, migrate
from .store import DB_NAME, STATUSES, RunLog

__all__ = ["DB_NAME", "MIGRATIONS", "STATUSES", "RunLog", "embed_params", "migrate", "read_embedded_params"]
