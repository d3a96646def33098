# velostream developer commands. `make demo` and `make test` work on a fresh machine:
# they create .venv, build the Rust extension (release) and install everything needed.

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# A Cargo target directory outside the clone keeps rebuilds fast; an empty one works too.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/velostream/target

# Quix Streams, a peer of the end-to-end Kafka benchmark, in a venv of its own (it pins
# confluent-kafka < 2.13; the project pins 2.16.1).
QUIX_VENV ?= $(HOME)/.cache/velostream/quix-venv

.PHONY: setup demo kafka-demo test lint rust-test py-test bench bench-kafka bench-quix clean

$(VENV)/.installed: pyproject.toml Cargo.toml Cargo.lock $(shell find rust -name '*.rs' -o -name Cargo.toml) $(shell find python -name '*.py' -o -name '*.pyi')
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'maturin>=1.9,<2'
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -c "import velostream._core as c; assert c.build_profile == 'release', c.build_profile"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/velostream run examples/demo/app.sql --until-end

# The demo on Kafka: a broker on loopback (from the test dependencies), the trades on a
# topic, examples/kafka/app.sql run against it, the output topics printed.
kafka-demo: setup
	$(PY) examples/kafka/run_demo.py

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(PY) -m mypy
	$(PY) -m mypy.stubtest velostream._core --mypy-config-file pyproject.toml

rust-test:
	cargo test -p velostream-engine -p velostream-codec

py-test: setup
	$(BIN)/pytest

test: lint rust-test py-test

bench: setup
	$(BIN)/pytest benches --benchmark-only
	$(BIN)/velostream bench

$(QUIX_VENV)/.installed: benches/requirements-quix.txt
	test -x $(QUIX_VENV)/bin/python || python3 -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q -r benches/requirements-quix.txt
	touch $@

bench-quix: $(QUIX_VENV)/.installed

# End to end on Kafka (SPEC section 10): velostream, Quix Streams and bare confluent-kafka
# loops on one loopback broker, 1 M records.
bench-kafka: setup bench-quix
	$(PY) benches/kafka_e2e.py --records 1000000 --quix-python $(QUIX_VENV)/bin/python

clean:
	rm -rf $(VENV) python/velostream/*.so
