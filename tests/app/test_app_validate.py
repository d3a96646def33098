"""``Application.validate``: every check ``run`` makes, short of processing data (issue 9).

Today's ``validate`` said OK for an unknown column, a missing input file and a sink on a
source, which ``run`` then rejected. Each of those is now found by ``validate``, with the
same error ``run`` gives, and without writing or consuming anything.
"""

import json
import logging

import pyarrow as pa
import pyarrow.json
import pytest

from velostream.app import Application
from velostream.errors import (
    ConfigError,
    SinkError,
    SourceError,
    SqlValidationError,
)

TRADES = [
    {"symbol": "A", "price": 10.5, "qty": 3},
    {"symbol": "B", "price": 20.0, "qty": 1},
]


def write_jsonl(path, rows=TRADES):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def snapshot(directory):
    return {
        p.relative_to(directory): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


SOURCE = "'t.type' = 'file_source', 't.path' = 't.jsonl'"
SINK = "'s.type' = 'file_sink', 's.path' = 'out/s.jsonl'"


@pytest.fixture
def folder(tmp_path):
    write_jsonl(tmp_path / "t.jsonl")
    return tmp_path


def test_validate_returns_each_statement_output_schema(folder):
    sql = (
        f"CREATE STREAM s AS SELECT symbol, price * qty AS notional FROM t WITH ({SOURCE}, {SINK});"
    )
    app = Application.from_sql(sql, base_dir=folder)
    before = snapshot(folder)
    schemas = app.validate()
    assert schemas == {
        "s": pa.schema([pa.field("symbol", pa.string()), pa.field("notional", pa.float64())])
    }
    assert snapshot(folder) == before  # nothing written, no output file created


def test_validate_reports_an_unknown_column_at_its_sql_position(folder):
    sql = f"CREATE STREAM s AS\nSELECT symbol,\n       prise FROM t WITH ({SOURCE}, {SINK});"
    app = Application.from_sql(sql, base_dir=folder)
    with pytest.raises(SqlValidationError) as validated:
        app.validate()
    assert (validated.value.line, validated.value.column) == (3, 8)
    assert "prise" in str(validated.value) and "price" in str(validated.value)
    with pytest.raises(SqlValidationError) as ran:
        app.run()
    assert str(ran.value) == str(validated.value)  # the same error run gives


def test_validate_reports_a_type_error(folder):
    sql = f"CREATE STREAM s AS SELECT UPPER(price) AS p FROM t WITH ({SOURCE}, {SINK});"
    with pytest.raises(SqlValidationError, match="UPPER") as info:
        Application.from_sql(sql, base_dir=folder).validate()
    assert (info.value.line, info.value.column) == (1, 27)


def test_validate_binds_a_statement_to_the_output_of_the_one_it_reads(folder):
    sql = (
        "CREATE STREAM big AS SELECT symbol, price * qty AS notional FROM t\n"
        f"  WITH ({SOURCE});\n"
        "CREATE STREAM huge AS SELECT symbol,\n"
        "  price FROM big WITH ('huge.type' = 'file_sink', 'huge.path' = 'huge.jsonl');\n"
    )
    with pytest.raises(SqlValidationError, match="'price'") as info:
        Application.from_sql(sql, base_dir=folder).validate()
    assert (info.value.line, info.value.column) == (4, 3)
    assert "notional" in str(info.value)  # the upstream's columns, not the file's
    good = sql.replace("  price FROM big", "  notional * 2 AS n FROM big")
    schemas = Application.from_sql(good, base_dir=folder).validate()
    assert schemas["huge"] == pa.schema([("symbol", pa.string()), ("n", pa.float64())])


def test_validate_reports_a_missing_source_file_naming_it(folder):
    sql = f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK});"
    app = Application.from_sql(sql, base_dir=folder)
    (folder / "t.jsonl").unlink()
    with pytest.raises(SourceError) as info:
        app.validate()
    assert str(folder / "t.jsonl") in str(info.value)
    assert info.value.source == "t"
    assert not (folder / "out").exists()


def test_validate_reports_a_glob_that_matches_nothing(folder):
    sql = f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK});"
    sql = sql.replace("'t.jsonl'", "'in/*.jsonl'")
    with pytest.raises(SourceError, match="no file matches"):
        Application.from_sql(sql, base_dir=folder).validate()


def test_a_waited_for_file_is_not_required(folder, caplog):
    sql = (
        f"CREATE STREAM s AS SELECT nothing_known FROM t WITH ({SOURCE}, {SINK}, "
        "'t.file.wait.timeout' = '1h');"
    ).replace("'t.jsonl'", "'later.jsonl'")
    with caplog.at_level(logging.INFO, logger="velostream.app"):
        assert Application.from_sql(sql, base_dir=folder).validate() == {"s": None}
    assert "later.jsonl" in caplog.text and "not there yet" in caplog.text


def test_validate_samples_csv_sources(folder):
    (folder / "t.csv").write_text("symbol,zip\nA,02134\nB,10001\n")
    sql = (
        "CREATE STREAM s AS SELECT symbol, zipp FROM t WITH ('t.type' = 'file_source', "
        f"'t.path' = 't.csv', 't.format' = 'csv', {SINK});"
    )
    with pytest.raises(SqlValidationError, match="zipp"):
        Application.from_sql(sql, base_dir=folder).validate()


def test_validate_reads_no_more_than_the_sample(folder, monkeypatch):
    # A large file: validate reads its first lines only, and consumes nothing.
    rows = [{"symbol": "A", "price": float(i), "qty": i} for i in range(60_000)]
    write_jsonl(folder / "t.jsonl", rows)
    read_sizes = []
    import velostream.app._schema as schema_module

    real_open = open

    def counting_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if str(file).endswith("t.jsonl"):
            real_read = handle.read

            def read(size=-1):
                data = real_read(size)
                read_sizes.append(len(data))
                return data

            handle.read = read
        return handle

    monkeypatch.setattr(schema_module, "open", counting_open, raising=False)
    sql = (
        f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK}, "
        "'t.schema.inference.rows' = '1000');"
    )
    before = snapshot(folder)
    Application.from_sql(sql, base_dir=folder).validate()
    line = len(json.dumps(rows[-1])) + 1
    assert 1000 * line < sum(read_sizes) <= 1000 * line + 192 * 1024  # the window, no more
    assert snapshot(folder) == before


def test_validate_infers_the_schema_the_run_infers(folder):
    # Integers in the first lines, a float later on within the inference window: the run
    # types the column double, and so must validate (else a bind would differ).
    rows = [{"symbol": "A", "price": i} for i in range(50)] + [{"symbol": "B", "price": 2.5}]
    write_jsonl(folder / "t.jsonl", rows)
    sql = f"CREATE STREAM s AS SELECT price FROM t WITH ({SOURCE}, {SINK});"
    app = Application.from_sql(sql, base_dir=folder)
    validated = app.validate()["s"]
    app.run()
    ran = pa.json.read_json(folder / "out" / "s.jsonl").schema
    assert validated == pa.schema([("price", pa.float64())])
    assert ran.field("price").type == pa.float64()


def test_validate_refuses_a_sink_on_a_source(folder):
    sql = f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK});"
    sql = sql.replace("'out/s.jsonl'", "'./t.jsonl'")
    before = snapshot(folder)
    with pytest.raises(ConfigError, match="source 't'"):
        Application.from_sql(sql, base_dir=folder).validate()
    assert snapshot(folder) == before


def test_validate_refuses_a_sink_path_that_is_a_directory(folder):
    (folder / "out" / "s.jsonl").mkdir(parents=True)
    sql = f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK});"
    app = Application.from_sql(sql, base_dir=folder)
    with pytest.raises(SinkError, match="directory") as info:
        app.validate()
    assert info.value.sink == "s"
    with pytest.raises(SinkError):
        app.run()


def test_validate_refuses_a_sink_under_a_file(folder):
    (folder / "out").write_text("a file, not a directory\n")
    sql = f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK});"
    app = Application.from_sql(sql, base_dir=folder)
    with pytest.raises(SinkError, match="not a directory"):
        app.validate()
    with pytest.raises(SinkError):
        app.run()


def test_source_schema_is_the_sampled_schema(folder):
    sql = f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK});"
    app = Application.from_sql(sql, base_dir=folder)
    assert app.source_schema("s", "t") == pa.schema(
        [("symbol", pa.string()), ("price", pa.float64()), ("qty", pa.int64())]
    )
    with pytest.raises(ConfigError, match="no source 'u'"):
        app.source_schema("s", "u")


def test_an_empty_source_file_binds_nothing_as_the_run_does(folder):
    (folder / "t.jsonl").write_text("")
    sql = f"CREATE STREAM s AS SELECT anything FROM t WITH ({SOURCE}, {SINK});"
    app = Application.from_sql(sql, base_dir=folder)
    assert app.validate() == {"s": None}
    assert app.run().statements["s"].records_in == 0


@pytest.mark.parametrize(
    ("properties", "key"),
    [({"s.path": "out\x00.jsonl"}, "s.path"), ({"s.path": 5}, "s.path"), ({7: "x"}, "7")],
)
def test_properties_that_are_not_text_are_config_errors(folder, properties, key):
    sql = f"CREATE STREAM s AS SELECT symbol FROM t WITH ({SOURCE}, {SINK});"
    with pytest.raises(ConfigError) as info:
        Application.from_sql(sql, base_dir=folder, properties=properties)
    assert info.value.key == key
