"""The health and metrics HTTP API of tables and statements (SPEC section 8).

- :mod:`~velostream.health.server`: :class:`HealthServer` (``/health/tables``,
  ``/health/table/{name}``, ``/health/progress``, ``POST /health/table/{name}/wait``,
  ``/metrics``) and :func:`parse_http_address`;
- :mod:`~velostream.health.views`: the JSON bodies, built from a registry;
- :mod:`~velostream.health.metrics`: :class:`VelostreamCollector`, the Prometheus metrics
  read at scrape time.

See ``docs/health.md``.
"""

from velostream.health.metrics import VelostreamCollector
from velostream.health.server import (
    DEFAULT_WAIT_TIMEOUT,
    MAX_WAIT_TIMEOUT,
    HealthServer,
    parse_http_address,
)
from velostream.health.views import progress_view, table_view, tables_view

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "MAX_WAIT_TIMEOUT",
    "HealthServer",
    "VelostreamCollector",
    "parse_http_address",
    "progress_view",
    "table_view",
    "tables_view",
]
