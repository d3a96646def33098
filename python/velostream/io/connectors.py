"""Build sources and sinks from their ``WITH`` properties (keys relative to ``<name>.``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from velostream.config import parse_bool, parse_duration_ms, validate_connector_properties
from velostream.errors import ConfigError
from velostream.io.bad_records import BadRecordPolicy
from velostream.io.base import Sink, Source
from velostream.io.file_sink import FileSink
from velostream.io.file_source import FileSource

SOURCE_TYPES = ("file_source", "kafka_source")
SINK_TYPES = ("file_sink", "kafka_sink")


def resolve_path(value: str, base_dir: str | os.PathLike[str] | None) -> Path:
    """Resolve a path property: ``~`` expanded, relative paths against ``base_dir``.

    Args:
        value: the path as written.
        base_dir: the SQL file's directory (default: the working directory).

    Returns:
        An absolute path.

    """
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (Path(base_dir) if base_dir is not None else Path.cwd()) / path
    return Path(os.path.normpath(path))


def _not_supported(name: str, connector_type: str) -> ConfigError:
    return ConfigError(
        f"{connector_type} is not supported yet (connector {name!r}, '{name}.type' = "
        f"'{connector_type}'); use file_source / file_sink for now",
        key=f"{name}.type",
        value=connector_type,
        allowed=("file_source", "file_sink"),
    )


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
) -> Source:
    """Create the source ``name`` from its properties (relative keys, including ``type``).

    Args:
        name: the connector name.
        properties: its keys without the ``<name>.`` prefix.
        base_dir: what relative paths resolve against.
        bad_records: the statement's bad-record policy.

    Raises:
        ConfigError: bad properties, a sink type, or a connector type not supported yet.

    """
    kind = connector_type(name, properties)
    if kind not in SOURCE_TYPES:
        raise ConfigError(
            f"connector {name!r} is read in FROM but '{name}.type' = '{kind}' is not a source",
            key=f"{name}.type",
            value=kind,
            allowed=SOURCE_TYPES,
        )
    if kind != "file_source":
        raise _not_supported(name, kind)
    wait = properties.get("file.wait.timeout")
    inference = properties.get("schema.inference.rows")
    return FileSource(
        name,
        resolve_path(_required_path(name, properties), base_dir),
        format=properties.get("format", "json"),
        batch_size=int(properties.get("batch.size", "65536")),
        wait_timeout_ms=parse_duration_ms(wait) if wait is not None else None,
        watch=parse_bool(properties.get("watch", "false")),
        inference_rows=int(inference) if inference is not None else None,
        bad_records=bad_records,
    )


def create_sink(
    name: str,
    properties: Mapping[str, str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> Sink:
    """Create the sink ``name`` from its properties (relative keys, including ``type``).

    Raises:
        ConfigError: bad properties, a source type, or a connector type not supported yet.

    """
    kind = connector_type(name, properties)
    if kind not in SINK_TYPES:
        raise ConfigError(
            f"connector {name!r} is used as a sink but '{name}.type' = '{kind}' is not a sink",
            key=f"{name}.type",
            value=kind,
            allowed=SINK_TYPES,
        )
    if kind != "file_sink":
        raise _not_supported(name, kind)
    return FileSink(
        name,
        resolve_path(_required_path(name, properties), base_dir),
        format=properties.get("format", "json"),
        append=parse_bool(properties.get("append", "false")),
    )
