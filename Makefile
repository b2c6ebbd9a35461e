# Strata — the two commands that matter: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
# cargo's target dir lives outside the clone, one per checkout path (see e2e/scripts/target-dir.sh).
ifeq ($(origin CARGO_TARGET_DIR),undefined)
CARGO_TARGET_DIR := $(shell e2e/scripts/target-dir.sh)
endif
export CARGO_TARGET_DIR
CARGO ?= cargo
STRATA := $(CARGO_TARGET_DIR)/debug/strata

.PHONY: all build test conformance setup-test check fmt-check clippy crds crds-check bundle bundle-check unit-test e2e-test demo help bench images
all: build

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build the strata binary (debug)
	$(CARGO) build -p strata-controller --bin strata

# Under `make test` a missing prerequisite fails the run instead of skipping a test.
test: export STRATA_REQUIRE_PREREQUISITES = 1
test: setup-test check unit-test console-test e2e-test ## everything CI runs: setup, format, lints, CRD drift, unit tests, console plugin, e2e on a real cluster
	@echo "make test: all green"

setup-test: ## install what the tests need (apt packages incl. promtool and chromium, Kubernetes built from source; cached)
	e2e/ci-setup.sh --test

check: fmt-check clippy crds-check bundle-check ## static checks

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: ## clippy on everything; non-test code also keeps functions under clippy.toml's line threshold
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --workspace --lib --bins --locked -- -D warnings -W clippy::too_many_lines

crds: build ## regenerate crds/crds.yaml from the Rust types
	$(STRATA) crds > crds/crds.yaml

crds-check: build ## fail when crds/crds.yaml differs from `strata crds`
	@$(STRATA) crds | diff -u crds/crds.yaml - || { echo "crds/crds.yaml is stale: run 'make crds' and commit it" >&2; exit 1; }

bundle: ## regenerate bundle/ (the OLM bundle) from manifests/overlays/openshift, examples/ and Cargo.toml
	tools/olm/bundle.sh generate

bundle-check: ## fail when bundle/ differs from what the manifests generate, then validate it (operator-framework/api)
	tools/olm/bundle.sh check

conformance: ## checks against OpenShift's own CRDs, validation suites and layering examples in ../shared/fixtures (fails when absent; reuses or starts the local cluster)
	e2e/scripts/run-conformance.sh

unit-test: ## unit, snapshot, property and fixture tests (no cluster)
	CI=true INSTA_UPDATE=no $(CARGO) test --workspace --locked

include e2e/e2e.mk
include console-plugin/console.mk

demo: ## build, start the local cluster, deploy the controller from manifests/, build an example, print the pinned MachineConfig
	e2e/scripts/demo.sh

images: ## the controller, builder and console-plugin images as OCI archives on pinned Debian trixie bases (images/README.md; needs root)
	images/build.sh

bench: ## measured benchmarks on the local real cluster (reused or started), written to bench/RESULTS.md
	bench/run.sh
