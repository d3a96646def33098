"""Hostile ``WITH`` clauses and ``properties`` dicts (issue 9).

Random keys (statement keys, connector keys, per-source keys, prefix families, unknown,
empty, unicode, dotted) with random values (enumerations in other cases, empty, blank,
huge and negative numbers, negative and overflowing durations, NaN, unterminated and
unset ``${VAR}`` references, NUL, right-to-left marks, very long text, config files that
are binary, UTF-16, a list, nested, deep or missing) go through ``vs.compile(properties=)``,
a ``WITH`` clause in the SQL text, and ``vs.Application.from_sql(properties=)``. Each
must end in a compiled query / application or a ``VelostreamError`` subclass (a
``ConfigError`` mostly) with a message, never another exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_support import describe, hostile_settings, outcome
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs

KEYS = [
    "error.strategy",
    "dead_letter.path",
    "dead_letter.sink",
    "event.time.field",
    "event.time.format",
    "event.time.error",
    "watermark.strategy",
    "watermark.max_out_of_orderness",
    "watermark.idle_timeout",
    "late.data.strategy",
    "late.data.allowed_lateness",
    "join.missing.strategy",
    "join.defaults.",
    "join.defaults.x",
    "join.wait.timeout",
    "application.id",
    "retry.max.attempts",
    "retry.backoff.initial",
    "retry.backoff.max",
    "circuit.breaker.failure.threshold",
    "circuit.breaker.reset.timeout",
    "t.type",
    "t.path",
    "t.format",
    "t.batch.size",
    "t.schema.inference.rows",
    "t.file.wait.timeout",
    "t.watch",
    "t.config_file",
    "t.event.time.field",
    "t.watermark.strategy",
    "out.type",
    "out.path",
    "out.format",
    "out.append",
    "out.config_file",
    "dlq.type",
    ".type",
    "type",
    "t.",
    ".",
    "",
    " ",
    "t.type ",
    "T.TYPE",
    "error.strategie",
    "\ufefferror.strategy",
    "ключ",
    "t.\x00",
    "t.path.extra",
    "a" * 500,
]

VALUES = [
    "",
    " ",
    "fail",
    "FAIL",
    "log_and_continue",
    "dead_letter",
    "true",
    "TRUE",
    "yes",
    "0",
    "-1",
    "1",
    "1e9",
    "99999999999999999999999999",
    "-99999999999999999999999999",
    "NaN",
    "inf",
    "5s",
    "-5s",
    "0s",
    "5 s",
    "5S",
    "1e400s",
    "99999999999999999999d",
    "250ms",
    "1h30m",
    "${UNSET_HOSTILE_VARIABLE}",
    "${UNSET_HOSTILE_VARIABLE:fallback}",
    "${",
    "${}",
    "${A:${B}}",
    "$",
    "file_source",
    "file_sink",
    "kafka_source",
    "kafka_sink",
    "json",
    "csv",
    "xml",
    "in.jsonl",
    "out.jsonl",
    "*.jsonl",
    "/",
    ".",
    "..",
    "\x00",
    "a\x00b",
    "\u202eevil",
    "日本語",
    "x" * 5000,
    "garbage.yaml",
    "utf16.yaml",
    "list.yaml",
    "nested.yaml",
    "null.yaml",
    "date.yaml",
    "deep.yaml",
    "bom.yaml",
    "missing.yaml",
    "a_directory",
    "bomb.yaml",
]

CONFIG_FILES = {
    "garbage.yaml": b"\xff\xfe\x00\x01binary\x80\x81",
    "utf16.yaml": "path: in.jsonl\n".encode("utf-16"),
    "list.yaml": b"- a\n- b\n",
    "nested.yaml": b"path:\n  x: [1, {a: 2}]\nformat: {csv: true}\n",
    "null.yaml": b"path:\nformat: ~\n",
    "date.yaml": b"path: 2024-01-01\nbatch.size: 1e3\nwatch: yes\n",
    "deep.yaml": b"path: " + b"[" * 1100 + b"]" * 1100 + b"\n",
    "bom.yaml": "\ufeffpath: in.jsonl\n".encode(),
    "bomb.yaml": b"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\npath: [*c, *c]\n",
}

SQL = "SELECT a, s FROM t"
APP = (
    "CREATE STREAM out AS SELECT a, s FROM t WITH ("
    "'t.type' = 'file_source', 't.path' = 'in.jsonl', "
    "'out.type' = 'file_sink', 'out.path' = 'out.jsonl')"
)

properties = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.text(max_size=12)),
    st.one_of(st.sampled_from(VALUES), st.text(max_size=12)),
    max_size=4,
)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hostile_properties")
    (directory / "in.jsonl").write_text('{"a": 1, "s": "x"}\n')
    (directory / "a_directory").mkdir()
    for name, content in CONFIG_FILES.items():
        (directory / name).write_bytes(content)
    return directory


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def check_compile(sql: str, props: dict | None) -> None:
    context = f"vs.compile({sql!r}, properties={props!r})"
    result = outcome(lambda: vs.compile(sql, properties=props), context)
    if not result.ok:
        assert isinstance(
            result.error, (vs.ConfigError, vs.SqlSyntaxError, vs.SqlValidationError)
        ), f"{describe(result.error)}\n{context}"


@hostile_settings(300)
@given(props=properties)
def test_compile_properties_give_a_query_or_a_config_error(props: dict[str, str]) -> None:
    check_compile(SQL, props)


@hostile_settings(300)
@given(props=properties)
def test_with_clauses_give_a_query_or_a_config_error(props: dict[str, str]) -> None:
    if not props:
        return
    clause = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in props.items())
    check_compile(f"{SQL} WITH ({clause})", None)


@hostile_settings(200)
@given(props=properties)
def test_application_properties_give_an_application_or_a_config_error(
    app_dir: Path, props: dict[str, str]
) -> None:
    context = f"Application.from_sql(properties={props!r})"
    result = outcome(lambda: vs.Application.from_sql(APP, props, base_dir=app_dir), context)
    if result.ok:
        outcome(result.value.explain, "explain: " + context)


@pytest.mark.parametrize(
    "props",
    [
        {"error.strategy": 5},
        {"error.strategy": None},
        {"error.strategy": ["fail"]},
        {"error.strategy": b"fail"},
        {"t.batch.size": 10},
        {"t.watch": True},
        {5: "fail"},
        {None: None},
        {("error", "strategy"): "fail"},
        ["error.strategy", "fail"],
        "error.strategy=fail",
    ],
    ids=repr,
)
def test_properties_of_other_types_are_taken_or_a_config_error(props: object) -> None:
    """Not str -> str: either used as they are (a key compile does not read) or refused."""
    context = f"vs.compile({SQL!r}, properties={props!r})"
    result = outcome(lambda: vs.compile(SQL, properties=props), context)  # type: ignore[arg-type]
    assert result.ok or isinstance(result.error, vs.ConfigError), (
        f"{describe(result.error)}\n{context}"
    )
    app = outcome(lambda: vs.Application.from_sql(APP, props), "Application: " + context)  # type: ignore[arg-type]
    assert app.ok or isinstance(app.error, vs.ConfigError), (
        f"Application: {describe(app.error)}\n{context}"
    )


@pytest.mark.parametrize("name", [*sorted(CONFIG_FILES), "missing.yaml", "a_directory"])
@pytest.mark.parametrize("connector", ["t", "out"])
def test_a_bad_config_file_is_a_config_error(app_dir: Path, name: str, connector: str) -> None:
    props = {f"{connector}.config_file": name}
    context = f"Application.from_sql(properties={props!r}) with {name} = {CONFIG_FILES.get(name, b'')[:40]!r}"
    outcome(lambda: vs.Application.from_sql(APP, props, base_dir=app_dir), context)
