# console-plugin/: the OpenShift console dynamic plugin (TypeScript). Included by the root Makefile.
# Its browser tests need the real cluster and run with the e2e tests (e2e/tests/console_plugin.rs).
CONSOLE_DIR := console-plugin
NPM ?= npm
# Every command runs on Node 22 or newer (package.json's engines): the system's node when it is,
# else Node 22 from the npm registry, installed once into the user's cache (scripts/node.sh).
# Relative to $(CONSOLE_DIR), where the recipes run.
WITH_NODE := scripts/node.sh

.PHONY: console-deps console-build console-lint console-test

# `npm ci` only when node_modules is missing or older than the lock file (npm ci rewrites
# node_modules/.package-lock.json). Never downloads browsers: the tests use Debian's chromium.
$(CONSOLE_DIR)/node_modules/.package-lock.json: $(CONSOLE_DIR)/package-lock.json $(CONSOLE_DIR)/package.json
	cd $(CONSOLE_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(WITH_NODE) $(NPM) ci --no-audit --no-fund
	@touch $@

console-deps: $(CONSOLE_DIR)/node_modules/.package-lock.json

console-build: console-deps ## console plugin: typecheck and production webpack build (dist/, validates the extensions)
	cd $(CONSOLE_DIR) && $(WITH_NODE) npx tsc --noEmit && $(WITH_NODE) $(NPM) run --silent build

console-lint: console-deps ## console plugin: ESLint (the console plugin template's rules) and the i18n extraction check
	cd $(CONSOLE_DIR) && $(WITH_NODE) $(NPM) run --silent lint && $(WITH_NODE) $(NPM) run --silent i18n-check

console-test: console-deps ## console plugin: typecheck, ESLint, i18n extraction check, unit tests (Vitest), production build
	cd $(CONSOLE_DIR) && $(WITH_NODE) node --version && $(WITH_NODE) npx tsc --noEmit \
		&& $(WITH_NODE) $(NPM) run --silent lint && $(WITH_NODE) $(NPM) run --silent i18n-check \
		&& $(WITH_NODE) npx vitest run && $(WITH_NODE) $(NPM) run --silent build
