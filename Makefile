# bucketcors — developer commands. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help test lint unit crd build clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the operator
	$(CARGO) build --locked

test: lint ## Lint, then every test against real servers (installs what they need)
	@export BUCKETCORS_VENV=$$(scripts/python-env.sh) && \
	  $(CARGO) test --locked --no-fail-fast

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

crd: ## Regenerate crds/bucketcors.yaml from the code
	$(CARGO) run --quiet --locked -- crd > crds/bucketcors.yaml

clean: ## Remove build output
	$(CARGO) clean
