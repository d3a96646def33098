"""What each table reads: dependencies from the SQL (sqlglot), merged with explicit ones.

:func:`extract_dependencies` lists every relation a statement names, parsed with the
velostream dialect: the ``FROM`` of each ``SELECT`` (every branch of a ``UNION ALL``),
each ``JOIN``, and the relations of subqueries (``WHERE k IN (SELECT k FROM other)``).
Names are kept as written, as :class:`~velostream.app.Application` compares them
(``db.trades`` when qualified).

:func:`table_dependencies` merges them with a definition's explicit dependencies and
checks each one is a table or a declared source (a name with a ``<name>.type`` property);
:func:`velostream.app.graph.dependency_waves` then orders the tables in waves.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from sqlglot import exp

from velostream import config
from velostream.errors import ConfigError, MissingDependencyError
from velostream.sql import Statement, parse_script, parse_statement
from velostream.sql.statements import relation_name

__all__ = [
    "Definition",
    "declared_source_names",
    "declared_sources_of",
    "extract_dependencies",
    "statement_dependencies",
    "table_dependencies",
]


class Definition(Protocol):
    """What :func:`table_dependencies` reads of a table definition."""

    @property
    def name(self) -> str:
        """The table's name."""
        ...

    @property
    def sql(self) -> str:
        """Its SELECT."""
        ...

    @property
    def dependencies(self) -> Sequence[str]:
        """Its explicit dependencies."""
        ...

    @property
    def properties(self) -> Mapping[str, str]:
        """Its ``WITH`` keys (its sources are declared here)."""
        ...


def statement_dependencies(statement: Statement) -> set[str]:
    """Every relation a parsed statement reads.

    Args:
        statement: from :func:`velostream.sql.parse_statement` or ``parse_script``.

    Returns:
        The names of the relations of its ``FROM`` clauses (each ``UNION ALL`` branch),
        its ``JOIN`` clauses and its subqueries; none for a declaration
        (``CREATE STREAM name (col TYPE, ...)``).

    """
    if statement.is_declaration:
        return set()
    # A common table expression names a query, not a relation to load first.
    local = {cte.alias for cte in statement.query.find_all(exp.CTE)}
    names = set()
    for table in statement.query.find_all(exp.Table):
        if table.name:
            name = relation_name(table)
            if name not in local:
                names.add(name)
    return names


def extract_dependencies(sql: str) -> set[str]:
    """Every relation the statements of ``sql`` read (``FROM``, ``JOIN``, subqueries).

    Args:
        sql: one statement or a script of several.

    Returns:
        The relation names, as written.

    Raises:
        SqlSyntaxError: the text does not parse.

    """
    names: set[str] = set()
    for statement in parse_script(sql):
        names |= statement_dependencies(statement)
    return names


def declared_source_names(properties: Mapping[str, str]) -> set[str]:
    """The connectors declared in ``properties`` (names with a ``<name>.type`` key)."""
    return set(config.connectors(properties))


def table_dependencies(
    definitions: Iterable[Definition],
    declared_sources: Collection[str] = (),
    *,
    tables: Collection[str] = (),
) -> dict[str, set[str]]:
    """The dependencies of each table: extracted from its SQL, plus its explicit ones.

    Args:
        definitions: the tables to load (name, sql, dependencies, properties).
        declared_sources: source names declared elsewhere (an application's
            ``CREATE STREAM name (...) WITH ('name.type' = ...)``); a definition's own
            ``<name>.type`` keys (in ``properties`` or in a ``WITH`` of its SQL) declare
            sources too.
        tables: tables that exist already (registered), which definitions may read.

    Returns:
        table name -> every name it depends on (tables and sources). Pass it to
        :func:`velostream.app.graph.dependency_waves` for the load waves (sources are not
        in the mapping, so they do not count).

    Raises:
        SqlSyntaxError: a definition's SQL does not parse.
        ConfigError: two definitions have the same name.
        MissingDependencyError: a dependency is neither a table (defined or registered)
            nor a declared source.

    """
    items = list(definitions)
    defined: set[str] = set()
    for definition in items:
        if definition.name in defined:
            raise ConfigError(
                f"table {definition.name!r} is defined twice", key="name", value=definition.name
            )
        defined.add(definition.name)
    known_tables = defined | set(tables)
    result: dict[str, set[str]] = {}
    for definition in items:
        statement = parse_statement(definition.sql)
        own = declared_sources_of(definition, statement)
        deps = statement_dependencies(statement) | set(definition.dependencies)
        for name in sorted(deps):
            if name not in known_tables and name not in declared_sources and name not in own:
                raise MissingDependencyError(definition.name, name)
        result[definition.name] = deps
    return result


def declared_sources_of(definition: Definition, statement: Statement) -> set[str]:
    """The sources a definition declares: ``<name>.type`` in its properties or SQL ``WITH``."""
    return declared_source_names({**definition.properties, **statement.properties})
