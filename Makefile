# bucketcors — developer commands. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help test lint crd build clean demo demo-down tools chart-check argocd-check bench bench-check cold-check image cluster-up cluster-down install-check

# Tools the tests and the demo install (kubectl, aws, moto, helm) are linked here.
export PATH := $(or $(BUCKETCORS_CACHE),$(HOME)/.cache/bucketcors)/bin:$(PATH)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the operator
	$(CARGO) build --locked

demo: ## Local control plane + S3 server + operator + examples/, then show the result
	scripts/demo.sh up

demo-down: ## Stop everything `make demo` started
	scripts/demo.sh down

tools: ## Install what the tests call: kubectl, promtool, aws, moto, kube-apiserver, etcd, the node's commands, the CRD server, Ceph RGW, Garage, s3s-fs, Chromium
	scripts/tools.sh
	scripts/control-plane.sh build-node >/dev/null
	scripts/crd-server.sh build >/dev/null
	scripts/rgw.sh install
	scripts/s3s-fs.sh build
	scripts/garage.sh build >/dev/null
	scripts/browser.sh install >/dev/null

test: lint tools chart-check argocd-check ## Lint, chart and Argo CD health checks, every test against real servers, then the image installed with helm into a single-node cluster (installs what they need)
	@export BUCKETCORS_VENV=$$(scripts/python-env.sh) && \
	  $(CARGO) test --locked --workspace --no-fail-fast
	scripts/compat-table.py
	@# The demo as README shows it, in a scratch folder (a running `make demo` is left alone).
	BUCKETCORS_DEMO_DIR=$(CURDIR)/target/demo-check scripts/demo.sh up >/dev/null
	BUCKETCORS_DEMO_DIR=$(CURDIR)/target/demo-check scripts/demo.sh check || \
	  { BUCKETCORS_DEMO_DIR=$(CURDIR)/target/demo-check scripts/demo.sh down; exit 1; }
	BUCKETCORS_DEMO_DIR=$(CURDIR)/target/demo-check scripts/demo.sh down
	scripts/install-check.sh

bench: ## Benchmarks against real servers, writes BENCHMARKS.md (BENCH_ARGS=--large adds 10,000 objects)
	@export BUCKETCORS_VENV=$$(scripts/python-env.sh) && \
	  $(CARGO) bench --locked --bench operator -- $(BENCH_ARGS)

bench-check: ## The default benchmark sizes compared with the budgets BENCHMARKS.md holds; fails on a regression
	@export BUCKETCORS_VENV=$$(scripts/python-env.sh) && \
	  $(CARGO) bench --locked --bench operator -- --check

chart-check: ## Lint, render and validate the Helm chart (pinned helm and kubernetes-validate)
	scripts/chart-check.sh

argocd-check: ## Argo CD health checks (argocd/) against their test data, under Lua 5.1
	scripts/argocd-health.sh

image: ## Build the operator's image with podman, nothing pulled (target/image/bucketcors-VERSION.oci.tar)
	scripts/image.sh build

cluster-up: ## A single-node cluster (kubelet, containerd, kube-proxy, ...) in target/cluster
	scripts/cluster.sh up $(CURDIR)/target/cluster

cluster-down: ## Stop what `make cluster-up` started
	scripts/cluster.sh down $(CURDIR)/target/cluster

install-check: ## The image and the chart installed with helm into a single-node cluster
	scripts/install-check.sh

lint: ## cargo fmt --check, clippy with warnings as errors, shellcheck on the scripts
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	scripts/shellcheck.sh

cold-check: ## make test from a fresh clone of HEAD with empty caches and target directory, in a scratch folder
	scripts/cold-check.sh

crd: ## Regenerate crds/*.yaml (and the chart's copies) from the code
	$(CARGO) run --quiet --locked -- crd bucketcors > crds/bucketcors.yaml
	$(CARGO) run --quiet --locked -- crd clusterbucketstore > crds/clusterbucketstore.yaml
	cp crds/bucketcors.yaml charts/bucketcors/files/crd.yaml
	cp crds/clusterbucketstore.yaml charts/bucketcors/files/store-crd.yaml

clean: ## Remove build output
	$(CARGO) clean
