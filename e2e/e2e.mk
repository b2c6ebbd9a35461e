# e2e: a real local Kubernetes cluster built from upstream sources (see e2e/README.md).
# Included by the root Makefile. Needs root.
E2E_DIR := $(dir $(lastword $(MAKEFILE_LIST)))
E2E_TARGET ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(shell $(E2E_DIR)scripts/target-dir.sh))
STRATA_BIN ?= $(E2E_TARGET)/debug/strata
export STRATA_BIN

.PHONY: e2e-setup e2e-build-kube e2e-images e2e-up e2e-down e2e-test e2e-env teardown-test

e2e-setup: ## apt packages + kube binaries (idempotent)
	$(E2E_DIR)ci-setup.sh

e2e-build-kube: ## build kube-apiserver/controller-manager/scheduler/kubelet/kubectl + etcd (cached)
	$(E2E_DIR)scripts/build-kube.sh

e2e-images: ## build the local images (pause, os-base, builder if the strata binary exists)
	$(E2E_DIR)scripts/build-images.sh

e2e-up: ## start the cluster in the background; writes e2e/.state/env
	$(E2E_DIR)scripts/cluster-up.sh
	@echo "e2e: run  . $(E2E_DIR).state/env"

e2e-down: ## stop the cluster, remove its processes, mounts, veth/bridge, CNI state
	$(E2E_DIR)scripts/cluster-down.sh

e2e-env:
	@cat $(E2E_DIR).state/env

e2e-test: ## run the e2e tests against a real cluster (started and stopped around the tests if not up)
	$(E2E_DIR)scripts/run-e2e-tests.sh

teardown-test: ## the teardown test on a cluster of its own (needs no cluster up: make e2e-down first)
	$(E2E_DIR)scripts/run-teardown-test.sh
