# mpcrm — every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FUZZ_VENV := .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed

.PHONY: run test test-js demo bench fuzz install clean-venv

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	exec $(PY) -m server run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-js

# The mini-program's plain-JS logic (utils/), with Node's built-in test runner (no npm packages).
test-js:
	@command -v node >/dev/null 2>&1 || { echo "node not found: the mini-program tests need Node.js 18+ (node --test)"; exit 1; }
	node --test miniprogram_stub/miniprogram/test/

# The whole journey of one lead on this machine (embedded DB, fake WeChat); see README "Demo".
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

clean-venv:
	rm -rf $(VENV) $(FUZZ_VENV)
