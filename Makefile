# Developer entry points for sluice. Run `make` or `make help` for the list.

SHELL := bash
.DEFAULT_GOAL := help

# The local AWS emulator (moto) for `make emulator` and `make demo`: port 4566 unless
# SLUICE_EMULATOR_PORT says otherwise. `make test` starts a private emulator on a free port
# (infra/with-emulator.sh), or uses AWS_ENDPOINT_URL when it is set.
DEMO_PORT := $(or $(SLUICE_EMULATOR_PORT),4566)
DEMO_ENV := SLUICE_EMULATOR_PORT=$(DEMO_PORT) AWS_ENDPOINT_URL=http://127.0.0.1:$(DEMO_PORT) \
	AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

ifdef CI
export CARGO_INCREMENTAL ?= 0
endif

.PHONY: help emulator emulator-stop build test bench faults fuzz demo package fmt lint clean

help: ## List the targets
	@echo "Usage: make <target>"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN { FS = ":.*## " } { printf "  %-14s %s\n", $$1, $$2 }'

emulator: ## Start the local AWS emulator (moto) in the background (port 4566, or SLUICE_EMULATOR_PORT)
	$(DEMO_ENV) bash infra/emulator.sh start

emulator-stop: ## Stop the local AWS emulator
	$(DEMO_ENV) bash infra/emulator.sh stop

build: ## Build every crate and target in the workspace
	cargo build --workspace --all-targets

test: ## Check template.yaml, then run all tests, the crash tests included (against the emulator, started and stopped as needed)
	bash infra/check-template.sh
	bash infra/with-emulator.sh cargo test --workspace --all-targets
	# The crash tests mostly wait out visibility timeouts: all of them at once.
	bash infra/with-emulator.sh cargo test -p sluice-cli --features failpoints --test crash_points -- --test-threads 8
	cargo test --workspace --doc
	BENCH_N=2000 BENCH_TINY=1 bash infra/bench.sh

BENCH_N ?= 100000
BENCH_GROWTH_MAX ?=

bench: ## Benchmark sluice against its peers on one core (BENCH_N=100000 lines); table in target/bench/
	BENCH_N=$(BENCH_N) BENCH_GROWTH_MAX=$(BENCH_GROWTH_MAX) bash infra/bench.sh

FAULT_CHANGES ?= 400
FAULT_SEEDS ?= 1,2,3

faults: ## Run the fault battery (every scenario once per seed in FAULT_SEEDS, FAULT_CHANGES changes per source, and the crash tests) and print its table
	FAULT_CHANGES=$(FAULT_CHANGES) FAULT_SEEDS=$(FAULT_SEEDS) bash infra/faults.sh

FUZZ_CASES ?= 20000

fuzz: ## Run the property tests (arbitrary bodies, records and Debezium events) for longer: FUZZ_CASES=20000
	SLUICE_FUZZ_CASES=$(FUZZ_CASES) cargo test -p sluice-core --test typing_properties
	SLUICE_FUZZ_CASES=$(FUZZ_CASES) cargo test -p sluice-pipeline --test ingest_properties

DEMO_ARGS ?=

demo: ## Run the whole pipeline locally on a realistic workload, then audit it (DEMO_ARGS=... for more)
	$(DEMO_ENV) bash infra/emulator.sh start
	$(DEMO_ENV) bash infra/demo.sh $(DEMO_ARGS)
	@echo "The emulator is still running at http://127.0.0.1:$(DEMO_PORT): run eval \"\$$(SLUICE_EMULATOR_PORT=$(DEMO_PORT) bash infra/emulator.sh env)\" then target/debug/sluice status. Stop it with: make emulator-stop"

package: ## Build every function for arm64 with cargo-lambda (release) and print each bootstrap's size
	bash infra/package.sh

fmt: ## Format all Rust code
	cargo fmt --all

lint: ## Check formatting and run clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p sluice-cli --features failpoints --all-targets -- -D warnings

clean: ## Remove build output and emulator state (stops the emulator)
	$(DEMO_ENV) bash infra/emulator.sh stop
	cargo clean
	rm -rf .emulator
