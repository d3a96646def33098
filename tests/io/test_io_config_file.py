"""``'<name>.config_file'`` files that cannot be read as YAML text are ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

import velostream as vs
from velostream import config


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe\x00\x01binary\x80\x81", "invalid byte 0xff at byte offset 0"),
        ("path: in.jsonl\n".encode("utf-16"), "UTF-16 byte-order mark"),
        (b"path: x\x80\x81\n", "invalid byte 0x80 at byte offset 7"),
        (b"path: a\x00b\n", "a NUL byte at byte offset 7"),
        (b"path: " + b"[" * 1100 + b"]" * 1100 + b"\n", "nested too deeply"),
        (b"a: &a {b: *a}\n", "nested too deeply"),
    ],
    ids=["garbage", "utf16", "latin1", "nul", "deep", "self-holding"],
)
def test_an_unreadable_config_file_is_a_config_error(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(vs.ConfigError) as info:
        config.load_config_file("t", path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    if expected != "nested too deeply" or b"[" in content:
        assert "'t.config_file'" in str(info.value)


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = [b"a: &a {x: 1, y: 1}"]
    for i in range(25):
        previous = b"a" if i == 0 else b"b%d" % (i - 1)
        lines.append(b"b%d: &b%d {p: *%s, q: *%s}" % (i, i, previous, previous))
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(vs.ConfigError, match="more than 10000 keys"):
        config.load_config_file("t", path)


def test_a_bom_and_nesting_within_the_limit_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes("\ufeffpath: x\nt.nest: {a: 1, b: [1, 2]}\n".encode())
    assert config.load_config_file("t", path) == {"path": "x", "nest.a": "1", "nest.b": "1,2"}


@pytest.mark.parametrize("props", [["error.strategy", "fail"], "error.strategy=fail", 5])
def test_properties_that_are_not_a_mapping_are_a_config_error(props: object) -> None:
    sql = (
        "CREATE STREAM out AS SELECT a FROM t WITH ('t.type' = 'file_source', "
        "'t.path' = 'in.jsonl', 'out.type' = 'file_sink', 'out.path' = 'out.jsonl')"
    )
    with pytest.raises(vs.ConfigError, match="properties must be a mapping"):
        vs.Application.from_sql(sql, props)  # type: ignore[arg-type]
