"""Prometheus metrics of tables and statements, read at scrape time.

:class:`VelostreamCollector` is a custom ``prometheus_client`` collector: nothing is
counted per record; each scrape reads the registry's tables (row count, bytes, status,
load progress) and the statements' counters as they are at that moment and turns them
into metric families. It is registered on a dedicated ``CollectorRegistry`` (never the
process-wide default one), so several servers and embedding programs do not collide.

Metrics (``table`` and ``statement`` are label names):

- ``velostream_table_rows{table}`` (gauge): live keys of the table.
- ``velostream_table_bytes{table}`` (gauge): heap bytes of its rows and index.
- ``velostream_table_status{table,status}`` (gauge): 1 for the current status, 0 for the
  other two (``loading``, ``ready``, ``failed``).
- ``velostream_table_load_records_total{table}`` / ``velostream_table_load_bytes_total``
  (counters): input read by the current load attempt (a retried load restarts them at
  0, which Prometheus treats as a counter reset).
- ``velostream_table_load_records_per_second{table}`` (gauge): the load's mean rate.
- ``velostream_table_load_percent{table}`` (gauge): only while the total is known.
- ``velostream_statement_<counter>_total{statement}`` (counter): each numeric counter of
  each statement (``records_in``, ``records_out``, ``bad_records``, ...).
- ``velostream_statement_lag_records{statement,source}`` (gauge): consumer lag per
  source, when a statement reports a known one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from velostream.health.views import StatementsCallable, statement_counters
from velostream.tables.registry import TableRegistry, TableStatus

__all__ = ["VelostreamCollector"]

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _metric_part(name: str) -> str:
    """``name`` as a piece of a Prometheus metric name (letters, digits, underscores)."""
    part = _NOT_NAME.sub("_", name).strip("_").lower()
    return part.removesuffix("_total") or "value"


def _number(value: Any) -> float | None:
    """A finite number as float; None for booleans, NaN, infinities and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class VelostreamCollector(Collector):
    """Reads tables (and statements) into metric families at each scrape.

    Args:
        registry: the tables.
        statements: per-statement counters (see :data:`velostream.health.views.StatementsCallable`),
            or None for table metrics only.

    """

    def __init__(
        self, registry: TableRegistry, statements: StatementsCallable | None = None
    ) -> None:
        self._registry = registry
        self._statements = statements

    def collect(self) -> Iterator[Metric]:
        """The metric families, as the tables and statements are now."""
        yield from self._table_metrics()
        if self._statements is not None:
            yield from self._statement_metrics(self._statements())

    def _table_metrics(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily(
            "velostream_table_rows", "Live keys (rows) of the table.", labels=["table"]
        )
        nbytes = GaugeMetricFamily(
            "velostream_table_bytes",
            "Heap bytes held by the table's rows and key index.",
            labels=["table"],
        )
        status = GaugeMetricFamily(
            "velostream_table_status",
            "1 for the table's current status (loading, ready, failed), 0 for the others.",
            labels=["table", "status"],
        )
        load_records = CounterMetricFamily(
            "velostream_table_load_records",
            "Input records read by the table's current load attempt.",
            labels=["table"],
        )
        load_bytes = CounterMetricFamily(
            "velostream_table_load_bytes",
            "Input bytes read by the table's current load attempt.",
            labels=["table"],
        )
        rate = GaugeMetricFamily(
            "velostream_table_load_records_per_second",
            "Mean input records per second of the table's load.",
            labels=["table"],
        )
        percent = GaugeMetricFamily(
            "velostream_table_load_percent",
            "Percent of the table's bulk load done (only when its total is known).",
            labels=["table"],
        )
        for handle in self._registry.handles():
            name = handle.name
            current = handle.status
            progress = handle.progress.as_dict()
            rows.add_metric([name], handle.row_count)
            nbytes.add_metric([name], handle.bytes)
            for each in TableStatus:
                status.add_metric([name, each.value], 1.0 if each is current else 0.0)
            load_records.add_metric([name], _number(progress["records"]) or 0.0)
            load_bytes.add_metric([name], _number(progress["bytes"]) or 0.0)
            rate.add_metric([name], _number(progress["records_per_second"]) or 0.0)
            done = _number(progress["percent"])
            if done is not None:
                percent.add_metric([name], done)
        yield from (rows, nbytes, status, load_records, load_bytes, rate, percent)

    def _statement_metrics(self, statements: Mapping[str, Any]) -> Iterator[Metric]:
        counters: dict[str, CounterMetricFamily] = {}
        lag = GaugeMetricFamily(
            "velostream_statement_lag_records",
            "Consumer lag of the statement's source in records (high watermark - position).",
            labels=["statement", "source"],
        )
        for statement, values in statement_counters(statements).items():
            for counter, value in values.items():
                if counter == "lag" and isinstance(value, Mapping):
                    for source, records in value.items():
                        known = _number(records)
                        if known is not None:
                            lag.add_metric([statement, str(source)], known)
                    continue
                number = _number(value)
                if number is None:
                    continue
                part = _metric_part(counter)
                family = counters.get(part)
                if family is None:
                    family = counters[part] = CounterMetricFamily(
                        f"velostream_statement_{part}",
                        f"The statement's {counter} counter.",
                        labels=["statement"],
                    )
                family.add_metric([statement], number)
        yield from counters.values()
        yield lag
