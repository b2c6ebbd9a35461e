# console-plugin/: the OpenShift console dynamic plugin (TypeScript). Included by the root Makefile.
# Its browser tests need the real cluster and run with the e2e tests (e2e/tests/console_plugin.rs).
CONSOLE_DIR := console-plugin
NPM ?= npm

.PHONY: console-deps console-build console-lint console-test

# `npm ci` only when node_modules is missing or older than the lock file (npm ci rewrites
# node_modules/.package-lock.json). Never downloads browsers: the tests use Debian's chromium.
$(CONSOLE_DIR)/node_modules/.package-lock.json: $(CONSOLE_DIR)/package-lock.json $(CONSOLE_DIR)/package.json
	cd $(CONSOLE_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(NPM) ci --no-audit --no-fund
	@touch $@

console-deps: $(CONSOLE_DIR)/node_modules/.package-lock.json

console-build: console-deps ## console plugin: typecheck and production webpack build (dist/, validates the extensions)
	cd $(CONSOLE_DIR) && npx tsc --noEmit && $(NPM) run --silent build

console-lint: console-deps ## console plugin: ESLint (the console plugin template's rules) and the i18n extraction check
	cd $(CONSOLE_DIR) && $(NPM) run --silent lint && $(NPM) run --silent i18n-check

console-test: console-deps ## console plugin: typecheck, ESLint, i18n extraction check, unit tests (Vitest), production build
	cd $(CONSOLE_DIR) && npx tsc --noEmit && $(NPM) run --silent lint && $(NPM) run --silent i18n-check \
		&& npx vitest run && $(NPM) run --silent build
