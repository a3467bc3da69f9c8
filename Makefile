# Wasmgate: `make run` builds and starts everything; `make test` runs every check CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENTS  := guard agent banned-words loop-forever alloc-bomb trap
COMPONENT_OUT := target/$(WASM_TARGET)/component
PY_VENV     := .venv
OPENAI_VERSION := 2.54.0
PYTEST_VERSION := 8.4.2

# Ports of `make run` (override: make run GATE_PORT=9090).
SIM_PORT  ?= 8000
GATE_PORT ?= 8080

.PHONY: run test setup components build ui lint unit-tests integration-tests python-tests fmt

## One-time toolchain set-up (idempotent, seconds when already done).
setup:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

## The guest components (release-size profile, wasm32-wasip2 components).
components: setup
	$(CARGO) build --profile component --target $(WASM_TARGET) $(addprefix -p ,$(COMPONENTS))

## The web UI (placeholder crate until the UI issue lands).
ui: setup
	$(CARGO) build --release --target wasm32-unknown-unknown -p ui-dioxus

## Host and simulator binaries (dev profile: dependencies optimised, shared with the tests).
build: components ui
	$(CARGO) build -p wasmgate -p vllm-sim

## Start vllm-sim on :$(SIM_PORT) and wasmgate on :$(GATE_PORT) with the default guard.
run: build
	./scripts/run.sh $(SIM_PORT) $(GATE_PORT)

fmt:
	$(CARGO) fmt --all

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) $(addprefix -p ,$(COMPONENTS)) -- -D warnings

$(PY_VENV)/.installed-$(OPENAI_VERSION):
	python3 -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check openai==$(OPENAI_VERSION) pytest==$(PYTEST_VERSION)
	touch $@

## Everything CI runs.
test: lint components build $(PY_VENV)/.installed-$(OPENAI_VERSION)
	$(CARGO) test --workspace --exclude ui-dioxus $(addprefix --exclude ,$(COMPONENTS)) -- --test-threads 2
	$(CARGO) test -p guard -p banned-words
	$(PY_VENV)/bin/python -m pytest -q tests/python
