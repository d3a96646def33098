"""Build sources and sinks from their ``WITH`` properties (keys relative to ``<name>.``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pyarrow as pa

from velostream.config import (
    STATEMENT_PROPERTIES,
    parse_bool,
    parse_duration_ms,
    validate_connector_properties,
)
from velostream.errors import ConfigError
from velostream.io.bad_records import BadRecordPolicy
from velostream.io.base import Sink, Source
from velostream.io.file_sink import FileSink
from velostream.io.file_source import DEFAULT_INFERENCE_ROWS, FileSource
from velostream.io.paths import resolve_path

__all__ = ["SINK_TYPES", "SOURCE_TYPES", "create_sink", "create_source", "resolve_path"]

SOURCE_TYPES = ("file_source", "kafka_source")
SINK_TYPES = ("file_sink", "kafka_sink")


def _required_path(name: str, properties: Mapping[str, str]) -> str:
    path = properties.get("path")
    if not path:
        raise ConfigError(f"connector {name!r} needs '{name}.path'", key=f"{name}.path")
    return path


def connector_type(name: str, properties: Mapping[str, str]) -> str:
    """Validate one connector's keys and return its type.

    Raises:
        ConfigError: a bad or unknown key or value.

    """
    return validate_connector_properties(name, properties)


def create_source(
    name: str,
    properties: Mapping[str, str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    bad_records: BadRecordPolicy | None = None,
    schema: pa.Schema | None = None,
    statement_properties: Mapping[str, str] | None = None,
    group_id: str | None = None,
    columns: Collection[str] = (),
    retry: Callable[[Callable[[], Any], str], Any] | None = None,
) -> Source:
    """Create the source ``name`` from its properties (relative keys, including ``type``).

    Args:
        name: the connector name.
        properties: its keys without the ``<name>.`` prefix.
        base_dir: what relative paths resolve against.
        bad_records: the statement's bad-record policy.
        schema: the declared columns (``CREATE STREAM name (col TYPE, ...)``): read
            exactly as declared, with no inference. None: inferred.
        statement_properties: the statement's ``WITH`` keys; its unprefixed
            ``schema.inference.rows`` applies when the connector sets none.
        group_id: a Kafka source's consumer group when ``group.id`` is not set (default
            ``velostream-<name>``).
        columns: the column names the query reads (a Kafka source adds the metadata
            columns among them: ``_key``, ``_headers``, ...).
        retry: runs a Kafka source's calls to the broker with the statement's retries.

    Raises:
        ConfigError: bad properties, a sink type, a declared type the format cannot read, or ``<name>.schema.inference.rows`` with
            declared columns (they are not inferred).

    """
    kind = connector_type(name, properties)
    if kind not in SOURCE_TYPES:
        raise ConfigError(
            f"connector {name!r} is read in FROM but '{name}.type' = '{kind}' is not a source",
            key=f"{name}.type",
            value=kind,
            allowed=SOURCE_TYPES,
        )
    inference = properties.get("schema.inference.rows")
    if inference is not None and schema is not None:
        raise ConfigError(
            f"'{name}.schema.inference.rows' has no effect: the columns of {name!r} are "
            "declared, so nothing is inferred; remove the key",
            key=f"{name}.schema.inference.rows",
            value=inference,
        )
    if inference is None and statement_properties is not None:
        inference = statement_properties.get("schema.inference.rows")
        if inference is not None:
            STATEMENT_PROPERTIES["schema.inference.rows"].check("schema.inference.rows", inference)
    if kind == "kafka_source":
        from velostream.io.kafka_source import METADATA_COLUMNS, KafkaSource

        return KafkaSource(
            name,
            properties,
            group_id=group_id or f"velostream-{name}",
            bad_records=bad_records,
            schema=schema,
            inference_rows=int(inference) if inference is not None else DEFAULT_INFERENCE_ROWS,
            metadata=[c for c in METADATA_COLUMNS if c in columns],
            retry=retry,
        )
    wait = properties.get("file.wait.timeout")
    return FileSource(
        name,
        resolve_path(_required_path(name, properties), base_dir),
        format=properties.get("format", "json"),
        batch_size=int(properties.get("batch.size", "65536")),
        wait_timeout_ms=parse_duration_ms(wait) if wait is not None else None,
        watch=parse_bool(properties.get("watch", "false")),
        inference_rows=int(inference) if inference is not None else DEFAULT_INFERENCE_ROWS,
        bad_records=bad_records,
        schema=schema,
    )


def create_sink(
    name: str,
    properties: Mapping[str, str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    source_paths: Sequence[str | os.PathLike[str]] = (),
    key_fields: Sequence[str] = (),
) -> Sink:
    """Create the sink ``name`` from its properties (relative keys, including ``type``).

    Args:
        name: the connector name.
        properties: its keys without the ``<name>.`` prefix.
        base_dir: what relative paths resolve against.
        source_paths: the resolved paths and globs the application's file sources read;
            the sink refuses to write a file they designate.
        key_fields: the output's ``PRIMARY KEY`` columns (a Kafka sink's message key).

    Raises:
        ConfigError: bad properties or a source type.
        SinkError: the sink's path designates a file one of ``source_paths`` reads.

    """
    kind = connector_type(name, properties)
    if kind not in SINK_TYPES:
        raise ConfigError(
            f"connector {name!r} is used as a sink but '{name}.type' = '{kind}' is not a sink",
            key=f"{name}.type",
            value=kind,
            allowed=SINK_TYPES,
        )
    if kind == "kafka_sink":
        from velostream.io.kafka_sink import KafkaSink

        return KafkaSink(name, properties, key_fields=key_fields)
    return FileSink(
        name,
        resolve_path(_required_path(name, properties), base_dir),
        format=properties.get("format", "json"),
        append=parse_bool(properties.get("append", "false")),
        source_paths=source_paths,
    )
