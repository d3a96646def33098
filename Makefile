# velostream developer commands. `make demo` and `make test` work on a fresh machine:
# they create .venv, build the Rust extension (release) and install everything needed.

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# A Cargo target directory outside the clone keeps rebuilds fast; an empty one works too.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/velostream/target

.PHONY: setup demo test lint rust-test py-test bench clean

$(VENV)/.installed: pyproject.toml Cargo.toml Cargo.lock $(shell find rust -name '*.rs' -o -name Cargo.toml) $(shell find python -name '*.py' -o -name '*.pyi')
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'maturin>=1.9,<2'
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -c "import velostream._core as c; assert c.build_profile == 'release', c.build_profile"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/velostream run examples/demo/app.sql --until-end

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

clean:
	rm -rf $(VENV) python/velostream/*.so
