# The two commands a newcomer needs: `make demo` and `make test`. Everything else they
# need (a .venv, maturin, the wheel, test tools) is installed by the targets themselves.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
QBO := $(VENV)/bin/qbo-rs
WHEEL_STAMP := $(VENV)/.qbo_rs-built
# mage-ai 0.9.80 (~1.4 GB, many pins) gets its own venv; the qbo_rs wheel installs into both.
MAGE_VENV := .venv-mage
MAGE_PY := $(MAGE_VENV)/bin/python
MAGE_STAMP := $(MAGE_VENV)/.qbo_rs-built
# singer-io's tap-quickbooks, a third-party QuickBooks client the emulator is tested against,
# in a test-only venv: it pins requests and singer-python, and needs nothing of qbo_rs.
TAP_VENV := .venv-tap
TAP_PY := $(TAP_VENV)/bin/python
# The browser test (tests/mage/test_ui_browser.py): Playwright for Python in a small venv of its
# own, driving Debian's Chromium (Playwright's own browser download is not used).
UI_VENV := .venv-ui
UI_PY := $(UI_VENV)/bin/python
CHROMIUM := /usr/bin/chromium
RUST_SOURCES := $(shell find src crates -name '*.rs' -o -name Cargo.toml) Cargo.toml Cargo.lock pyproject.toml $(shell find python -name '*.py' -o -name '*.pyi')
DEMO_START ?= 2015-01-01
DEMO_END ?= 2026-01-01

.PHONY: help wheel mage-venv tap-venv ui-venv chromium demo demo-cli mage-ui compose-tool compose-check test lint test-rust test-python bench bench-smoke stubtest clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The dev dependency group of pyproject.toml (pip >= 25.1 reads dependency groups).
$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=25.1"
	$(PIP) install --quiet --group dev
	touch $@

# Build a release wheel (abi3) and install it into the venv, only when sources changed.
$(WHEEL_STAMP): $(VENV)/.deps $(RUST_SOURCES)
	rm -rf target/wheels
	$(VENV)/bin/maturin build --release --quiet --out target/wheels
	$(PIP) install --quiet --force-reinstall --no-deps target/wheels/qbo_rs-*.whl
	touch $@

wheel: $(WHEEL_STAMP) ## build and install the wheel into .venv

$(MAGE_VENV)/.deps:
	$(PYTHON) -m venv $(MAGE_VENV)
	$(MAGE_PY) -m pip install --quiet --upgrade pip
	$(MAGE_PY) -m pip install --quiet "mage-ai==0.9.80"
	touch $@

$(MAGE_STAMP): $(MAGE_VENV)/.deps $(WHEEL_STAMP)
	$(MAGE_PY) -m pip install --quiet --force-reinstall --no-deps target/wheels/qbo_rs-*.whl
	$(MAGE_PY) -m pip check
	touch $@

mage-venv: $(MAGE_STAMP) ## mage-ai 0.9.80 + the qbo_rs wheel in .venv-mage

$(TAP_VENV)/.deps:
	$(PYTHON) -m venv $(TAP_VENV)
	$(TAP_PY) -m pip install --quiet --upgrade pip
	$(TAP_PY) -m pip install --quiet "tap-quickbooks==2.5.0"
	$(TAP_PY) -m pip check
	touch $@

tap-venv: $(TAP_VENV)/.deps ## singer-io's tap-quickbooks 2.5.0 in .venv-tap (tests drive it against the emulator)

# Debian's Chromium, installed when missing (checked every time: it lives outside the repo).
chromium:
	@test -x $(CHROMIUM) || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

$(UI_VENV)/.deps:
	$(PYTHON) -m venv $(UI_VENV)
	$(UI_PY) -m pip install --quiet --upgrade pip
	$(UI_PY) -m pip install --quiet "playwright>=1.50,<2"
	touch $@

ui-venv: $(UI_VENV)/.deps chromium ## Playwright for Python in .venv-ui and Debian's Chromium, for the browser test

demo: $(MAGE_STAMP) ## the three Mage pipelines, headless, against the bundled emulator into data/*.txt
	@./scripts/mage_demo.sh "$(abspath $(MAGE_PY))" "$(DEMO_START)" "$(DEMO_END)"

demo-cli: $(WHEEL_STAMP) ## the same backfill with the plain qbo-rs command line (no Mage)
	@./scripts/demo.sh "$(QBO)" "$(DEMO_START)" "$(DEMO_END)"

# A due one-time trigger (the shipped qb_invoice_trigger: a full historical backfill) is held unless
# FIRE_TRIGGERS=1; either way a box says what each trigger does before and after Mage's start-up lines.
FIRE_TRIGGERS ?= 0
mage-ui: $(MAGE_STAMP) ## Mage UI on http://127.0.0.1:6789 (Ctrl-C stops it); due one-time triggers held unless FIRE_TRIGGERS=1
	@FIRE_TRIGGERS="$(FIRE_TRIGGERS)" ./scripts/mage_ui.sh "$(abspath $(MAGE_VENV))/bin/mage"

# Debian's docker-compose 1.29 parses docker-compose.yaml without a Docker engine.
compose-tool:
	@command -v docker-compose >/dev/null || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-compose >/dev/null; }

compose-check: compose-tool ## validate docker-compose.yaml with a real compose parser
	docker-compose --env-file .env.example config -q

test: $(WHEEL_STAMP) ## build the wheel and run every test (Rust, Python, PostgreSQL) and a benchmark smoke run
	./scripts/with-pg.sh $(MAKE) --no-print-directory test-rust test-python bench-smoke

lint: $(VENV)/.deps ## rustfmt, clippy (warnings are errors), ruff lint and format, mypy
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(PY) -m mypy

test-rust: lint ## cargo tests of the pure-Rust crates (PostgreSQL ones use $$QBO_RS_TEST_DSN; `make test` provides one)
	cargo test --workspace --exclude qbo_rs --quiet

test-python: $(WHEEL_STAMP) $(MAGE_STAMP) $(TAP_VENV)/.deps ui-venv compose-tool stubtest ## pytest against the installed wheel (Mage tests drive .venv-mage, tap-quickbooks tests .venv-tap, the browser test .venv-ui)
	QBO_RS_MAGE_PYTHON="$(abspath $(MAGE_PY))" QBO_RS_TAP_PYTHON="$(abspath $(TAP_PY))" QBO_RS_UI_PYTHON="$(abspath $(UI_PY))" $(PY) -m pytest -q

stubtest: $(WHEEL_STAMP) ## check the .pyi stubs against the compiled module
	$(PY) -m mypy.stubtest qbo_rs._qbo_rs --allowlist .stubtest-allowlist

bench: $(WHEEL_STAMP) $(MAGE_STAMP) ## benchmarks (prints figures): throughput vs plain Python, pacing, RSS, Mage overhead per window, requests/time/RSS/block runs per path at QBO's limits
	$(PY) benches/bench.py
	./scripts/with-pg.sh $(PY) benches/notebook_bench.py
	./scripts/with-pg.sh $(PY) benches/pg_bench.py
	$(MAGE_PY) scripts/mage_bench.py
	$(MAGE_PY) scripts/data_bench.py
	$(PY) benches/sync_bench.py

bench-smoke: $(WHEEL_STAMP) $(MAGE_STAMP) ## the benchmarks at tiny sizes, so they never rot
	$(PY) benches/bench.py --smoke
	$(PY) benches/notebook_bench.py --smoke
	$(MAGE_PY) scripts/mage_bench.py --smoke
	$(MAGE_PY) scripts/data_bench.py --smoke
	$(PY) benches/sync_bench.py --smoke

clean:
	rm -rf target/wheels $(VENV) $(MAGE_VENV) $(TAP_VENV) $(UI_VENV) data bench-results test-output
