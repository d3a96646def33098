"""``WITH`` properties: the statement-level keys, their validation, and connector groups.

A statement's ``WITH`` clause mixes two kinds of keys (SPEC sections 7 and 12):

- keys prefixed by a connector name (``'trades.type'``, ``'trades.path'``): they belong to
  that source or sink and are validated by it (see :data:`CONNECTOR_PROPERTIES`);
- unprefixed keys: statement-level settings of this module's table
  :data:`STATEMENT_PROPERTIES` (event time, watermarks, late data, error handling, joins,
  dead letters). An unknown one is a :class:`~velostream.errors.ConfigError` naming the
  key and the nearest known key.

Values may reference the environment as ``${VAR}`` or ``${VAR:default}``
(:func:`expand_env`), and ``'<name>.config_file'`` names a YAML file holding more keys of
connector ``<name>`` (:func:`resolve_properties`); relative paths resolve against the
directory of the SQL file.

Dead letters: with ``'error.strategy' = 'dead_letter'`` (and likewise
``'event.time.error'`` / ``'late.data.strategy' = 'dead_letter'``) bad records go to
``'dead_letter.sink'`` (the name of a sink connector declared in the same ``WITH``, which
then receives dead letters only) or, as a shorthand, to the JSON Lines file
``'dead_letter.path'``. A dead letter is one record ``{"source", "location", "reason",
"raw"}``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from velostream.errors import ConfigError

__all__ = [
    "CONNECTOR_PROPERTIES",
    "CONNECTOR_TYPES",
    "EVENT_TIME_KEYS",
    "STATEMENT_PROPERTIES",
    "PropertySpec",
    "connector_name_of",
    "connectors",
    "describe_statement_properties",
    "expand_env",
    "load_config_file",
    "parse_bool",
    "parse_duration_ms",
    "register_statement_property",
    "resolve_properties",
    "statement_properties",
    "validate_connector_properties",
    "validate_statement_properties",
]


# --------------------------------------------------------------------------- value checks


def parse_duration_ms(text: str) -> int:
    """Parse a duration property value (``'250ms'``, ``'30s'``, ``'5m'``, ``'1500'``).

    Args:
        text: the value.

    Returns:
        The duration in milliseconds (zero allowed).

    Raises:
        ValueError: not a duration, or negative.

    """
    # The SQL front end owns the duration grammar; import lazily to keep `config` light.
    from velostream.sql.durations import parse_duration

    return parse_duration(text)


def parse_bool(text: str) -> bool:
    """Parse a boolean property value (``true``/``false``, any case).

    Args:
        text: the value.

    Returns:
        The boolean.

    Raises:
        ValueError: anything else.

    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError(f"expected true or false, got {text!r}")


def _positive_int(text: str) -> None:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"expected a positive integer, got {text!r}")


def _non_empty(text: str) -> None:
    if not text.strip():
        raise ValueError("expected a non-empty value")


def _duration(text: str) -> None:
    parse_duration_ms(text)


#: Characters Kafka allows in a topic name; an application id prefixes its topics.
_TOPIC_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _topic_prefix(text: str) -> None:
    if not text:
        raise ValueError("expected a non-empty name")
    bad = sorted({c for c in text if c not in _TOPIC_CHARACTERS})
    if bad:
        raise ValueError(
            f"{text!r} holds {bad[0]!r}: it names Kafka topics and groups, which allow "
            "only letters, digits, '.', '_' and '-'"
        )
    if len(text) > 200:
        raise ValueError(
            f"expected at most 200 characters (it prefixes topic names, at most 249), "
            f"got {len(text)}"
        )


# The longest retry or circuit-breaker duration: longer ones are surely a mistake (a unit).
_MAX_RESILIENCE_MS = 86_400_000


def _resilience_duration(text: str) -> None:
    millis = parse_duration_ms(text)
    if millis <= 0:
        raise ValueError("expected a positive duration")
    if millis > _MAX_RESILIENCE_MS:
        raise ValueError("expected a duration of at most 1d")


def _boolean(text: str) -> None:
    parse_bool(text)


@dataclass(frozen=True)
class PropertySpec:
    """One known property key.

    Attributes:
        key: the key (for a prefix family such as ``join.defaults.<col>``, the prefix
            ``join.defaults.`` with ``prefix=True``).
        description: what it means, for ``explain`` and error messages.
        allowed: the allowed values (compared case-sensitively), if the value is an enum.
        validator: raises ValueError (with a message) on a bad value, for non-enum keys.
        default: the default value, as text, if there is one.
        prefix: the key is a prefix: every key starting with it is this property.
        expects: a short description of the expected value, used in error messages.

    """

    key: str
    description: str
    allowed: tuple[str, ...] = ()
    validator: Callable[[str], None] | None = None
    default: str | None = None
    prefix: bool = False
    expects: str = ""

    def matches(self, key: str) -> bool:
        """Tell whether ``key`` is this property (exactly, or under its prefix)."""
        if self.prefix:
            return key.startswith(self.key) and len(key) > len(self.key)
        return key == self.key

    def check(self, key: str, value: str) -> None:
        """Validate one value.

        Args:
            key: the key as written (reported in the error).
            value: the value.

        Raises:
            ConfigError: the value is not allowed.

        """
        if self.allowed and value not in self.allowed:
            raise ConfigError(
                f"invalid value {value!r} for {key!r}: expected one of "
                + ", ".join(repr(a) for a in self.allowed),
                key=key,
                value=value,
                allowed=self.allowed,
            )
        if self.validator is not None:
            try:
                self.validator(value)
            except ValueError as exc:
                allowed = (self.expects,) if self.expects else ()
                raise ConfigError(
                    f"invalid value {value!r} for {key!r}: {exc}",
                    key=key,
                    value=value,
                    allowed=allowed,
                ) from None


def _enum(key: str, description: str, *allowed: str, default: str | None = None) -> PropertySpec:
    return PropertySpec(key, description, allowed=allowed, default=default)


def _spec(
    key: str,
    description: str,
    validator: Callable[[str], None],
    expects: str,
    default: str | None = None,
    prefix: bool = False,
) -> PropertySpec:
    return PropertySpec(
        key, description, validator=validator, expects=expects, default=default, prefix=prefix
    )


# --------------------------------------------------------------------------- statement keys

_EVENT_TIME_FORMAT_HINT = (
    "epoch_millis, epoch_seconds (epoch), iso8601 (ISO8601) or a strftime-style pattern"
)

_STATEMENT_SPECS: tuple[PropertySpec, ...] = (
    # SPEC 5: time.
    _spec(
        "event.time.field",
        "field holding event time; absent: processing time",
        _non_empty,
        "a field name",
    ),
    _spec(
        "event.time.format",
        "format of the event-time field; absent: auto-detect",
        _non_empty,
        _EVENT_TIME_FORMAT_HINT,
    ),
    _enum(
        "event.time.error",
        "what to do with a record whose event time cannot be extracted",
        "fail",
        "dead_letter",
        default="fail",
    ),
    _enum(
        "watermark.strategy",
        "how the watermark follows event time",
        "bounded_out_of_orderness",
        "ascending",
        "none",
        default="bounded_out_of_orderness",
    ),
    _spec(
        "watermark.max_out_of_orderness",
        "how far behind the max event time the watermark stays",
        _duration,
        "a duration such as 5s",
        default="0s",
    ),
    _spec(
        "watermark.idle_timeout",
        "after this long without records a partition stops holding the watermark back",
        _duration,
        "a duration such as 30s",
    ),
    _enum(
        "late.data.strategy",
        "what to do with a record whose every window has closed",
        "drop",
        "dead_letter",
        "include_in_next_window",
        "update_previous",
        default="drop",
    ),
    _spec(
        "late.data.allowed_lateness",
        "with update_previous: how long a closed window keeps its state",
        _duration,
        "a duration such as 1m",
        default="0s",
    ),
    # SPEC 7: runtime error handling.
    _enum(
        "error.strategy",
        "what to do with a bad record (undecodable input, type error)",
        "fail",
        "log_and_continue",
        "dead_letter",
        default="fail",
    ),
    _spec(
        "commit.interval",
        "how often a statement reading Kafka flushes its sinks and commits its offsets",
        _duration,
        "a duration such as 5s",
        default="5s",
    ),
    _spec(
        "dead_letter.sink",
        "name of the sink connector (declared in the same WITH) receiving dead letters",
        _non_empty,
        "the name of a declared sink",
    ),
    _spec(
        "dead_letter.path",
        "JSON Lines file receiving dead letters (shorthand for a dead-letter file sink)",
        _non_empty,
        "a file path",
    ),
    # SPEC 7: retries of transient errors and the circuit breaker around sinks
    # (velostream.runtime.resilience reads them).
    _spec(
        "retry.max.attempts",
        "attempts in all (the first included) at a call failing with a transient error",
        _positive_int,
        "a positive integer",
        default="10",
    ),
    _spec(
        "retry.backoff.initial",
        "the longest delay before the first retry (each next one doubles, with full jitter)",
        _resilience_duration,
        "a positive duration of at most 1d, such as 100ms",
        default="100ms",
    ),
    _spec(
        "retry.backoff.max",
        "the longest delay between two attempts",
        _resilience_duration,
        "a positive duration of at most 1d, such as 30s",
        default="30s",
    ),
    _spec(
        "circuit.breaker.failure.threshold",
        "consecutive failures of a sink that open its circuit breaker",
        _positive_int,
        "a positive integer",
        default="5",
    ),
    _spec(
        "circuit.breaker.reset.timeout",
        "how long an open circuit breaker waits before a trial call to its sink",
        _resilience_duration,
        "a positive duration of at most 1d, such as 30s",
        default="30s",
    ),
    # SPEC 4: inference of undeclared file sources (also '<source>.schema.inference.rows').
    _spec(
        "schema.inference.rows",
        "rows read to infer the column types of the statement's undeclared file sources",
        _positive_int,
        "a positive integer",
        default="1000",
    ),
    # SPEC 8: joins.
    _enum(
        "join.missing.strategy",
        "what a stream-table join does when the key is missing or the table is not ready",
        "emit_with_nulls",
        "skip_record",
        "use_defaults",
        "wait_and_retry",
        "fail",
    ),
    _spec(
        "join.defaults.",
        "with use_defaults: the value of table column <col> for a missing key",
        lambda _value: None,
        "any value",
        prefix=True,
    ),
    _spec(
        "join.wait.timeout",
        "with wait_and_retry: how long to wait for a missing key or table",
        _duration,
        "a duration such as 5s",
        default="5s",
    ),
    _spec(
        "table.load.max_parallel",
        "tables of an application loading their bulk input at once, at most",
        _positive_int,
        "a positive integer",
        default="4",
    ),
    # SPEC 9: scale-out.
    _spec(
        "application.id",
        "the application's identity: turns scale-out on; names its consumer groups, "
        "changelog and repartition topics",
        _topic_prefix,
        "a name of letters, digits, '.', '_' and '-' (at most 200)",
    ),
)

#: Statement-level keys (unprefixed ``WITH`` keys), by key. Prefix families end with ``.``.
STATEMENT_PROPERTIES: dict[str, PropertySpec] = {spec.key: spec for spec in _STATEMENT_SPECS}


def register_statement_property(spec: PropertySpec) -> None:
    """Declare one more statement-level key (for modules that add features).

    Args:
        spec: the key's description and validator.

    """
    STATEMENT_PROPERTIES[spec.key] = spec


def _statement_spec(key: str) -> PropertySpec | None:
    spec = STATEMENT_PROPERTIES.get(key)
    if spec is not None and not spec.prefix:
        return spec
    for candidate in STATEMENT_PROPERTIES.values():
        if candidate.prefix and candidate.matches(key):
            return candidate
    return None


def _nearest(key: str, known: Iterable[str]) -> list[str]:
    choices = sorted(set(known))
    close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
    if not close:
        # Fall back to keys sharing the first dotted component (e.g. "watermark.").
        head = key.split(".", 1)[0] + "."
        close = [c for c in choices if c.startswith(head)][:3]
    if not close:
        # Always name the nearest key, even when it is not very near.
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.0)
    return close


def _unknown_key_error(key: str, value: str, known: Iterable[str], what: str) -> ConfigError:
    nearest = _nearest(key, known)
    hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
    return ConfigError(f"unknown {what} {key!r}{hint}", key=key, value=value, allowed=nearest)


# --------------------------------------------------------------------------- connectors

#: Connector types known to velostream, and the ones this version can run.
CONNECTOR_TYPES: tuple[str, ...] = ("kafka_source", "kafka_sink", "file_source", "file_sink")

EVENT_TIME_KEYS = (
    "event.time.field",
    "event.time.format",
    "event.time.error",
    "watermark.strategy",
    "watermark.max_out_of_orderness",
    "watermark.idle_timeout",
    "late.data.strategy",
    "late.data.allowed_lateness",
)

_FORMAT = _enum("format", "record format", "json", "csv", default="json")

#: Keys of each connector type, relative to ``<name>.``. Kafka connectors accept any
#: further key (passed to librdkafka).
CONNECTOR_PROPERTIES: dict[str, dict[str, PropertySpec]] = {
    "file_source": {
        spec.key: spec
        for spec in (
            _FORMAT,
            _spec("path", "file path or glob", _non_empty, "a file path or glob"),
            _spec(
                "batch.size",
                "records per batch handed to the query",
                _positive_int,
                "a positive integer",
                default="65536",
            ),
            _spec(
                "file.wait.timeout",
                "how long to wait for the file or glob to appear",
                _duration,
                "a duration such as 30s",
            ),
            _spec("watch", "tail the file for new lines", _boolean, "true or false", "false"),
            _spec(
                "schema.inference.rows",
                "rows read to infer the column types",
                _positive_int,
                "a positive integer",
                default="1000",
            ),
            _spec("config_file", "YAML file holding more keys", _non_empty, "a file path"),
            *(STATEMENT_PROPERTIES[k] for k in EVENT_TIME_KEYS),
        )
    },
    "file_sink": {
        spec.key: spec
        for spec in (
            _FORMAT,
            _spec("path", "output file path", _non_empty, "a file path"),
            _spec(
                "append",
                "append to an existing file instead of replacing it",
                _boolean,
                "true or false",
                "false",
            ),
            _spec("config_file", "YAML file holding more keys", _non_empty, "a file path"),
        )
    },
    # Kafka connectors: velostream's own keys are checked here; any other key goes to
    # librdkafka, which validates it when the connector is built.
    "kafka_source": {
        spec.key: spec
        for spec in (
            _enum("format", "message format", "json", default="json"),
            _spec("topic", "topic(s), comma-separated", _non_empty, "a topic name"),
            _spec(
                "topic.wait.timeout",
                "how long to wait for a topic that does not exist yet",
                _duration,
                "a duration such as 30s",
            ),
            _spec(
                "topic.retry.interval",
                "how often to look for a topic being waited for",
                _duration,
                "a duration such as 1s",
                default="1s",
            ),
            _spec(
                "batch.size",
                "messages per consume call (and at most per batch)",
                _positive_int,
                "a positive integer",
                default="10000",
            ),
            _spec(
                "schema.inference.rows",
                "messages read to infer the column types",
                _positive_int,
                "a positive integer",
                default="1000",
            ),
            _spec("config_file", "YAML file holding more keys", _non_empty, "a file path"),
            *(STATEMENT_PROPERTIES[k] for k in EVENT_TIME_KEYS),
        )
    },
    "kafka_sink": {
        spec.key: spec
        for spec in (
            _enum("format", "message format", "json", default="json"),
            _spec("topic", "topic", _non_empty, "a topic name"),
            _spec("config_file", "YAML file holding more keys", _non_empty, "a file path"),
        )
    },
}

#: Connector types whose unknown keys are passed on to their client (librdkafka).
PASSTHROUGH_TYPES = ("kafka_source", "kafka_sink")


def connector_name_of(key: str, connector_names: Iterable[str]) -> str | None:
    """Return the connector a key belongs to (longest matching ``<name>.`` prefix), if any.

    Args:
        key: a ``WITH`` key.
        connector_names: the declared connector names.

    Returns:
        The connector name, or None for a statement-level key.

    """
    best: str | None = None
    for name in connector_names:
        if key.startswith(name + ".") and (best is None or len(name) > len(best)):
            best = name
    return best


def connectors(properties: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Group the properties of every declared connector (a name with ``<name>.type``).

    Args:
        properties: ``WITH`` properties.

    Returns:
        connector name -> {key relative to ``<name>.``: value}, in declaration order.

    """
    names = [
        key[: -len(".type")]
        for key in properties
        if key.endswith(".type") and _statement_spec(key) is None and len(key) > len(".type")
    ]
    groups: dict[str, dict[str, str]] = {name: {} for name in names}
    for key, value in properties.items():
        owner = connector_name_of(key, names)
        if owner is not None:
            groups[owner][key[len(owner) + 1 :]] = value
    return groups


def statement_properties(
    properties: Mapping[str, str], connector_names: Iterable[str] = ()
) -> dict[str, str]:
    """Return the statement-level (unprefixed) properties only.

    Args:
        properties: ``WITH`` properties.
        connector_names: connector names besides those declared with ``<name>.type``.

    Returns:
        The keys that belong to no connector.

    """
    names = set(connector_names) | set(connectors(properties))
    return {k: v for k, v in properties.items() if connector_name_of(k, names) is None}


def validate_statement_properties(
    properties: Mapping[str, str], connector_names: Iterable[str] = ()
) -> None:
    """Validate the statement-level keys of a ``WITH`` clause.

    Keys prefixed by a connector name (``<name>.``, for every name of ``connector_names``
    and every name declared with ``<name>.type``) belong to that connector and are skipped
    here (see :func:`validate_connector_properties`). Every other key must be a key of
    :data:`STATEMENT_PROPERTIES`, with an allowed value.

    Args:
        properties: the ``WITH`` properties (after environment expansion).
        connector_names: the names of the statement's sources and sinks.

    Raises:
        ConfigError: an unknown key (naming it and the nearest known keys in ``allowed``)
            or a bad value (naming key, value and the allowed values).

    """
    names = set(connector_names) | set(connectors(properties))
    for key, value in properties.items():
        if connector_name_of(key, names) is not None:
            continue
        spec = _statement_spec(key)
        if spec is None:
            raise _unknown_key_error(key, value, _known_statement_keys(), "property")
        spec.check(key, value)


def _known_statement_keys() -> list[str]:
    return [s.key + "<col>" if s.prefix else s.key for s in STATEMENT_PROPERTIES.values()]


def validate_connector_properties(name: str, properties: Mapping[str, str]) -> str:
    """Validate the keys of one connector (relative to ``<name>.``).

    Args:
        name: the connector name (used in messages, keys are reported as ``<name>.<key>``).
        properties: its keys without the ``<name>.`` prefix, including ``type``.

    Returns:
        The connector type.

    Raises:
        ConfigError: missing or unknown type, unknown key (with the nearest known key),
            or bad value.

    """
    type_key = f"{name}.type"
    connector_type = properties.get("type")
    if connector_type is None:
        raise ConfigError(
            f"connector {name!r} has no {type_key!r} (one of {', '.join(CONNECTOR_TYPES)})",
            key=type_key,
            allowed=CONNECTOR_TYPES,
        )
    if connector_type not in CONNECTOR_TYPES:
        raise ConfigError(
            f"invalid value {connector_type!r} for {type_key!r}: expected one of "
            + ", ".join(repr(t) for t in CONNECTOR_TYPES),
            key=type_key,
            value=connector_type,
            allowed=CONNECTOR_TYPES,
        )
    specs = CONNECTOR_PROPERTIES[connector_type]
    for key, value in properties.items():
        if key == "type":
            continue
        spec = specs.get(key)
        full_key = f"{name}.{key}"
        if spec is None and connector_type in PASSTHROUGH_TYPES:
            continue  # a librdkafka key: the client validates it
        if spec is None:
            known = [f"{name}.{k}" for k in ("type", *specs)]
            raise _unknown_key_error(full_key, value, known, f"{connector_type} property")
        spec.check(full_key, value)
    return connector_type


# --------------------------------------------------------------------------- resolution

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand_env(
    value: str, *, key: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Expand ``${VAR}`` and ``${VAR:default}`` from the environment.

    Args:
        value: the property value.
        key: the property key, for the error message.
        environ: the environment (default ``os.environ``).

    Returns:
        The value with every reference replaced.

    Raises:
        ConfigError: a referenced variable is unset and has no default.

    """
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        if variable in env:
            return env[variable]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {variable!r} used by {key!r} is not set and has no default "
            f"(write ${{{variable}:default}})",
            key=key,
            value=value,
        )

    return _ENV_REFERENCE.sub(replace, value)


# More keys than this in one config file is refused (an alias "bomb" expands to billions).
_MAX_CONFIG_KEYS = 10_000


def _flatten_yaml(
    data: object, prefix: str, out: dict[str, str], origin: Path, depth: int = 0
) -> None:
    if depth > _MAX_CONFIG_DEPTH:
        # Only aliases get here: a mapping that holds itself (`a: &a {b: *a}`).
        raise ConfigError(
            f"{origin}: key {prefix[:-1][:80]!r}...: nested too deeply (does a mapping hold "
            "itself through an alias?)",
            key=prefix[:-1][:80],
        )
    if isinstance(data, Mapping):
        for k, v in data.items():
            _flatten_yaml(v, f"{prefix}{k}.", out, origin, depth + 1)
        return
    key = prefix[:-1]
    if len(out) >= _MAX_CONFIG_KEYS:
        raise ConfigError(
            f"{origin}: more than {_MAX_CONFIG_KEYS} keys (aliases expanding without end?)",
            key=key,
        )
    if isinstance(data, (list, tuple)):
        out[key] = ",".join(_scalar_text(item, key, origin) for item in data)
    else:
        out[key] = _scalar_text(data, key, origin)


def _scalar_text(value: object, key: str, origin: Path) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        raise ConfigError(f"{origin}: key {key!r} has no value", key=key)
    if isinstance(value, (Mapping, list, tuple)):
        raise ConfigError(f"{origin}: key {key!r} must be a scalar", key=key)
    return str(value)


# Deeper YAML than this is refused: no config holds it, and PyYAML composes recursively.
_MAX_CONFIG_DEPTH = 64


class _TooDeepError(Exception):
    def __init__(self, line: int, column: int) -> None:
        super().__init__(line, column)
        self.line = line
        self.column = column


def _depth_limited_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            try:
                if self.depth > _MAX_CONFIG_DEPTH:
                    mark = self.peek_event().start_mark
                    raise _TooDeepError(mark.line + 1, mark.column + 1)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def _config_text(raw: bytes, key: str, path: Path) -> str:
    """Decode a config file as UTF-8 (a leading BOM allowed), naming the first bad byte."""
    hint = (
        "it starts with a UTF-16 byte-order mark: save it as UTF-8"
        if raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        else "is it binary, or in another encoding? velostream reads config files as UTF-8"
    )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{key!r} {str(path)!r} is not UTF-8 text: invalid byte 0x{raw[exc.start]:02x} at "
            f"byte offset {exc.start} ({hint})",
            key=key,
            value=str(path),
        ) from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ConfigError(
            f"{key!r} {str(path)!r} is not text: a NUL byte at byte offset {nul} ({hint})",
            key=key,
            value=str(path),
        )
    return text.removeprefix("\ufeff")


def load_config_file(name: str, path: Path) -> dict[str, str]:
    """Read the YAML config file of connector ``name``.

    The file is a mapping of keys (nested mappings are joined with ``.``), relative to the
    connector (``path: data/x.jsonl``) or prefixed by its name (``trades.path: ...``).

    Args:
        name: the connector name.
        path: the file (already resolved).

    Returns:
        Keys relative to ``<name>.`` -> values as text.

    Raises:
        ConfigError: the file cannot be read or is not a mapping.

    """
    import yaml

    key = f"{name}.config_file"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {key!r} {str(path)!r}: {exc.strerror or exc}", key=key, value=str(path)
        ) from None
    text = _config_text(raw, key, path)
    try:
        data = yaml.load(text, Loader=_depth_limited_loader())  # a SafeLoader subclass
    except _TooDeepError as exc:
        raise ConfigError(
            f"{key!r} {str(path)!r}: YAML nested too deeply at line {exc.line}, column "
            f"{exc.column} (more than {_MAX_CONFIG_DEPTH} levels of mappings and lists)",
            key=key,
            value=str(path),
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{key!r} {str(path)!r} is not valid YAML: {exc}", key=key, value=str(path)
        ) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key!r} {str(path)!r} must hold a mapping of keys", key=key)
    flat: dict[str, str] = {}
    _flatten_yaml(data, "", flat, path)
    prefix = name + "."
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in flat.items()}


def resolve_properties(
    properties: Mapping[str, str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Expand environment references and merge ``<name>.config_file`` files.

    Keys written in ``WITH`` win over keys of a config file.

    Args:
        properties: the ``WITH`` properties as written.
        base_dir: directory that relative config-file paths resolve against (the SQL
            file's directory); default: the working directory.
        environ: the environment (default ``os.environ``).

    Returns:
        The resolved properties (a new dict; config-file keys come after the others).

    Raises:
        ConfigError: an unset variable without default, an unreadable config file.

    """
    expanded = {k: expand_env(v, key=k, environ=environ) for k, v in properties.items()}
    resolved = dict(expanded)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for key, value in expanded.items():
        if not key.endswith(".config_file"):
            continue
        name = key[: -len(".config_file")]
        path = Path(value)
        if not path.is_absolute():
            path = base / path
        for sub_key, sub_value in load_config_file(name, path).items():
            full_key = f"{name}.{sub_key}"
            if full_key not in resolved:
                resolved[full_key] = expand_env(sub_value, key=full_key, environ=environ)
    return resolved


def describe_statement_properties() -> str:
    """Return the statement-level keys as a text table (key, allowed values, meaning).

    Returns:
        One line per key.

    """
    lines = []
    for spec in STATEMENT_PROPERTIES.values():
        key = spec.key + "<col>" if spec.prefix else spec.key
        values = " | ".join(spec.allowed) if spec.allowed else spec.expects
        default = f" (default {spec.default})" if spec.default is not None else ""
        lines.append(f"{key:34} {values}{default}: {spec.description}")
    return "\n".join(lines)
