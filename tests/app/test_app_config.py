"""WITH properties: statement-level keys, connector keys, environment, config files."""

import pytest

from velostream import config
from velostream.errors import ConfigError


def test_unknown_statement_key_names_the_key_and_the_nearest_known_key():
    with pytest.raises(ConfigError) as info:
        config.validate_statement_properties({"watermark.stratgy": "ascending"}, [])
    assert info.value.key == "watermark.stratgy"
    assert info.value.allowed[0] == "watermark.strategy"
    assert "'watermark.stratgy'" in str(info.value)
    assert "did you mean 'watermark.strategy'" in str(info.value)


def test_a_far_unknown_key_still_names_some_known_key():
    with pytest.raises(ConfigError) as info:
        config.validate_statement_properties({"zzz": "1"}, [])
    assert info.value.key == "zzz"
    assert info.value.allowed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("error.strategy", "ignore"),
        ("watermark.strategy", "punctuated"),
        ("late.data.strategy", "keep"),
        ("event.time.error", "skip"),
        ("join.missing.strategy", "nulls"),
    ],
)
def test_bad_enum_value_names_key_value_and_allowed_values(key, value):
    with pytest.raises(ConfigError) as info:
        config.validate_statement_properties({key: value}, [])
    assert info.value.key == key
    assert info.value.value == value
    assert info.value.allowed
    assert key in str(info.value) and value in str(info.value)
    for allowed in info.value.allowed:
        assert allowed in str(info.value)


@pytest.mark.parametrize(
    "key",
    ["watermark.max_out_of_orderness", "watermark.idle_timeout", "late.data.allowed_lateness"],
)
def test_bad_duration(key):
    with pytest.raises(ConfigError, match="5 parsecs") as info:
        config.validate_statement_properties({key: "5 parsecs"}, [])
    assert info.value.key == key


def test_valid_statement_keys_pass():
    config.validate_statement_properties(
        {
            "event.time.field": "ts",
            "event.time.format": "%Y-%m-%d %H:%M:%S",
            "watermark.strategy": "bounded_out_of_orderness",
            "watermark.max_out_of_orderness": "5s",
            "late.data.strategy": "update_previous",
            "late.data.allowed_lateness": "1m",
            "error.strategy": "dead_letter",
            "dead_letter.path": "dlq.jsonl",
            "join.missing.strategy": "use_defaults",
            "join.defaults.price": "0",
            "application.id": "demo",
        },
        [],
    )


def test_connector_prefixed_keys_are_left_to_the_connector():
    config.validate_statement_properties(
        {"trades.anything": "x", "out.type": "file_sink", "out.whatever": "y"}, ["trades"]
    )


def test_connectors_groups_declared_connectors():
    props = {
        "trades.type": "file_source",
        "trades.path": "t.jsonl",
        "out.type": "file_sink",
        "out.path": "o.csv",
        "error.strategy": "fail",
        "join.defaults.type": "x",
    }
    assert config.connectors(props) == {
        "trades": {"type": "file_source", "path": "t.jsonl"},
        "out": {"type": "file_sink", "path": "o.csv"},
    }


def test_connector_keys_are_validated_with_nearest_key():
    with pytest.raises(ConfigError) as info:
        config.validate_connector_properties("trades", {"type": "file_source", "pth": "x"})
    assert info.value.key == "trades.pth"
    assert info.value.allowed[0] == "trades.path"
    with pytest.raises(ConfigError) as info:
        config.validate_connector_properties("trades", {"type": "file_source", "format": "xml"})
    assert info.value.key == "trades.format" and info.value.allowed == ["json", "csv"]
    with pytest.raises(ConfigError) as info:
        config.validate_connector_properties("trades", {"type": "ftp_source"})
    assert info.value.key == "trades.type"
    with pytest.raises(ConfigError, match=r"batch\.size"):
        config.validate_connector_properties("trades", {"type": "file_source", "batch.size": "0"})


def test_env_expansion_with_defaults():
    env = {"DATA_DIR": "/data"}
    assert config.expand_env("${DATA_DIR}/t.jsonl", environ=env) == "/data/t.jsonl"
    assert config.expand_env("${MISSING:fallback}", environ=env) == "fallback"
    assert config.expand_env("${MISSING:}", environ=env) == ""
    with pytest.raises(ConfigError, match="MISSING") as info:
        config.expand_env("${MISSING}", key="trades.path", environ=env)
    assert info.value.key == "trades.path"


def test_config_file_is_loaded_relative_to_base_dir_and_with_keys_win(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "trades.yaml").write_text(
        "type: file_source\nformat: csv\npath: ${TRADES_FILE:data/t.csv}\nfile:\n  wait:\n    timeout: 5s\n"
    )
    resolved = config.resolve_properties(
        {"trades.config_file": "conf/trades.yaml", "trades.format": "json"},
        base_dir=tmp_path,
        environ={},
    )
    assert resolved == {
        "trades.config_file": "conf/trades.yaml",
        "trades.format": "json",
        "trades.type": "file_source",
        "trades.path": "data/t.csv",
        "trades.file.wait.timeout": "5s",
    }


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.resolve_properties({"trades.config_file": "nope.yaml"}, base_dir=tmp_path)
    assert info.value.key == "trades.config_file"


def test_registered_statement_keys_are_accepted():
    spec = config.PropertySpec("test.only.key", "a key added by a test", allowed=("a", "b"))
    config.register_statement_property(spec)
    try:
        config.validate_statement_properties({"test.only.key": "a"}, [])
        with pytest.raises(ConfigError):
            config.validate_statement_properties({"test.only.key": "c"}, [])
    finally:
        del config.STATEMENT_PROPERTIES["test.only.key"]
