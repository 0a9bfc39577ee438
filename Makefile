# mpcrm — every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FUZZ_VENV := .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed
CONSOLE := console
CONSOLE_STAMP := $(CONSOLE)/node_modules/.installed
CONSOLE_DIST := $(CONSOLE)/dist/index.html
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LINT_VENV := .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed

.PHONY: run test test-js demo bench fuzz lint install clean-venv

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

# The console is built first when console/dist is missing (and npm is there; without Node.js the API
# runs and /console says it is not built).
run: $(STAMP)
	@test -f $(CONSOLE_DIST) || $(MAKE) --no-print-directory $(CONSOLE_DIST) || echo "mpcrm: /console is not built (it needs Node.js 20.19+ with npm: make console); starting the API"
	exec $(PY) -m server run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-js
	@$(MAKE) --no-print-directory test-console

# The mini-program: the unit tests of utils/ (Node's test runner), then every page in
# miniprogram-simulate (WeChat's component runtime, official wcc/wcsc) against the real backend.
# The simulator's npm packages are pinned by miniprogram_stub/sim/package-lock.json (npm ci when
# node_modules is missing or older than the lock file).
SIM := miniprogram_stub/sim
SIM_STAMP := $(SIM)/node_modules/.installed

$(SIM_STAMP): $(SIM)/package.json $(SIM)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: the simulator tests need Node.js 18+ with npm"; exit 1; }
	cd $(SIM) && npm ci --no-audit --no-fund
	@touch $(SIM_STAMP)

test-js: $(STAMP) $(SIM_STAMP)
	@command -v node >/dev/null 2>&1 || { echo "node not found: the mini-program tests need Node.js 18+ (node --test)"; exit 1; }
	node --test miniprogram_stub/miniprogram/test/
	cd $(SIM) && node --test --test-concurrency=1 compile.test.js test/

.PHONY: console chromium test-console

# The web console (console/, Vue 3 + Element Plus + ECharts, built by Vite) served at /console.
# `make run` builds it when console/dist is missing; `make console` builds it again. npm ci installs
# exactly console/package-lock.json (no global installs).

$(CONSOLE_STAMP): $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: the console needs Node.js 20.19+ with npm"; exit 1; }
	cd $(CONSOLE) && npm ci --no-audit --no-fund
	@touch $(CONSOLE_STAMP)

$(CONSOLE_DIST): $(CONSOLE_STAMP)
	cd $(CONSOLE) && npm run build

console: $(CONSOLE_STAMP)
	cd $(CONSOLE) && npm run build

# Debian's Chromium (and a CJK font for readable screenshots), installed when missing.
chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get install -y chromium fonts-wqy-microhei || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium fonts-wqy-microhei; }; }

# The console in a real browser (playwright-core driving $(CHROMIUM)) against the real backend;
# screenshots in console/test-results/.
test-console: $(STAMP) console chromium
	cd $(CONSOLE) && MPCRM_CHROMIUM=$(CHROMIUM) node --test --test-concurrency=1 tests/

# The whole journey of one lead on this machine (embedded DB, fake WeChat); see docs/miniprogram.md.
demo: $(STAMP)
	$(PY) -m miniprogram_stub.demo

bench: $(STAMP)
	$(PY) -m bench

# schemathesis over /openapi.json as an admin and as a rep (every check, stateful), < 5 minutes.
# Its own venv: requirements-fuzz.txt is installed by this target only.
$(FUZZ_STAMP): requirements-fuzz.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(FUZZ_VENV)/bin/python || $(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-fuzz.txt
	@touch $(FUZZ_STAMP)

fuzz: $(STAMP) $(FUZZ_STAMP)
	$(PY) -m fuzz

# ruff and mypy (settings in pyproject.toml), zero findings. Their own venv: requirements-lint.txt
# (which brings the runtime pins along, for mypy's pydantic plugin and the libraries' types).
$(LINT_STAMP): requirements-lint.txt requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-lint.txt
	@touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(LINT_VENV)/bin/ruff check
	$(LINT_VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV) $(FUZZ_VENV) $(LINT_VENV)
