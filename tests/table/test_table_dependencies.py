"""Table dependencies: extracted from the SQL, merged with explicit ones, waves, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import velostream as vs
from velostream.tables import extract_dependencies, table_dependencies


def test_extract_from_join_union_and_subquery() -> None:
    assert extract_dependencies("SELECT a FROM trades") == {"trades"}
    assert extract_dependencies(
        "SELECT t.a, r.b FROM trades t JOIN ref r ON t.k = r.k LEFT JOIN db.extra x ON t.k = x.k"
    ) == {"trades", "ref", "db.extra"}
    assert extract_dependencies(
        "SELECT k, v FROM left_side UNION ALL SELECT k, v FROM right_side "
        "UNION ALL SELECT k, v FROM third"
    ) == {"left_side", "right_side", "third"}
    assert extract_dependencies(
        "SELECT k FROM orders WHERE k IN (SELECT k FROM vip WHERE tier IN (SELECT t FROM tiers))"
    ) == {"orders", "vip", "tiers"}
    # Names keep their spelling (the application compares them as written).
    assert extract_dependencies('SELECT a FROM "Trades"') == {"Trades"}


def test_extract_from_a_script_and_a_create_table() -> None:
    script = (
        "CREATE TABLE t AS SELECT k PRIMARY KEY, v FROM src WITH ('src.type' = 'file_source', "
        "'src.path' = 'x.jsonl');\n"
        "CREATE STREAM s AS SELECT * FROM t2"
    )
    assert extract_dependencies(script) == {"src", "t2"}


def test_extract_reports_bad_sql() -> None:
    with pytest.raises(vs.SqlSyntaxError):
        extract_dependencies("SELECT FROM WHERE")


def test_table_dependencies_merge_explicit_and_check_names() -> None:
    props = {"src.type": "file_source", "src.path": "x.jsonl"}
    defs = [
        vs.TableDefinition("a", "SELECT k PRIMARY KEY, v FROM src", properties=props),
        vs.TableDefinition("b", "SELECT k PRIMARY KEY, v FROM a", dependencies=("c",)),
        vs.TableDefinition(
            "c",
            "SELECT k PRIMARY KEY, v FROM other WITH ('other.type' = 'file_source', "
            "'other.path' = 'y.jsonl')",
        ),
        vs.TableDefinition("d", "SELECT k PRIMARY KEY, v FROM outside"),
    ]
    deps = table_dependencies(defs, declared_sources={"outside"})
    assert deps == {"a": {"src"}, "b": {"a", "c"}, "c": {"other"}, "d": {"outside"}}
    assert vs.app.dependency_waves({n: sorted(d) for n, d in deps.items()}) == [
        ["a", "c", "d"],
        ["b"],
    ]


def test_missing_dependency_names_table_and_missing() -> None:
    defs = [
        vs.TableDefinition("a", "SELECT k PRIMARY KEY, v FROM src"),
    ]
    with pytest.raises(vs.MissingDependencyError) as info:
        table_dependencies(defs)
    assert info.value.table == "a"
    assert info.value.missing == "src"
    # An explicit dependency is checked too; a registered table counts as a table.
    props = {"src.type": "file_source", "src.path": "x.jsonl"}
    defs = [vs.TableDefinition("a", "SELECT k PRIMARY KEY FROM src", ("ref",), props)]
    with pytest.raises(vs.MissingDependencyError) as info:
        table_dependencies(defs)
    assert (info.value.table, info.value.missing) == ("a", "ref")
    assert table_dependencies(defs, tables={"ref"}) == {"a": {"src", "ref"}}


def test_loader_refuses_a_missing_dependency_before_loading(tmp_path: Path) -> None:
    registry = vs.TableRegistry()
    loader = vs.ParallelLoader(registry)
    with pytest.raises(vs.MissingDependencyError) as info:
        loader.load(
            [
                vs.TableDefinition("a", "SELECT k PRIMARY KEY FROM nowhere"),
            ]
        )
    assert (info.value.table, info.value.missing) == ("a", "nowhere")
    assert registry.names() == []


def test_cycle_names_the_cycle() -> None:
    defs = [
        vs.TableDefinition("a", "SELECT k PRIMARY KEY, v FROM c"),
        vs.TableDefinition("b", "SELECT k PRIMARY KEY, v FROM a"),
        vs.TableDefinition("c", "SELECT k PRIMARY KEY, v FROM b"),
        vs.TableDefinition("d", "SELECT k PRIMARY KEY, v FROM a"),
    ]
    registry = vs.TableRegistry()
    with pytest.raises(vs.CircularDependencyError) as info:
        vs.ParallelLoader(registry).load(defs)
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a", "b", "c"]
    assert registry.names() == []  # nothing was created


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(vs.CircularDependencyError) as info:
        vs.ParallelLoader(vs.TableRegistry()).load(
            [vs.TableDefinition("a", "SELECT k PRIMARY KEY FROM a")]
        )
    assert info.value.cycle == ["a", "a"]


def test_explicit_dependency_closing_a_cycle() -> None:
    props = {"src.type": "file_source", "src.path": "x.jsonl"}
    defs = [
        vs.TableDefinition("a", "SELECT k PRIMARY KEY FROM src", ("b",), props),
        vs.TableDefinition("b", "SELECT k PRIMARY KEY FROM a"),
    ]
    with pytest.raises(vs.CircularDependencyError) as info:
        vs.ParallelLoader(vs.TableRegistry()).load(defs)
    assert info.value.cycle in (["a", "b", "a"], ["b", "a", "b"])
