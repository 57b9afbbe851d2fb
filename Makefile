# Fresh machine: `make demo` or `make test` sets up everything it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -n 2
# `make demo PORT=4570`: the emulator's port; unset, the sandbox's own default (4566).
PORT   ?=
PORT_ARG := $(if $(PORT),--port $(PORT))

.PHONY: help setup test demo sandbox bench lint mutation constraints clean system-deps report-screenshot

help:
	@echo "make demo   - run the seed scenario end to end on the embedded emulator (no AWS account; PORT=N for its port)"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make bench  - print the benchmark figures (enforcer and backfill)"
	@echo "make lint   - ruff"
	@echo "make report-screenshot - render the demo HTML audit report with headless Chromium into docs/audit-report.png"
	@echo "make mutation - mutmut over enforcer/decision.py and enforcer/rekey.py with their fast tests (not in make test)"

# The only OS-level need is a Python with venv and pip. Debian splits venv into its
# own package, so install it when it is missing (as root, or via sudo).
system-deps:
	@if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then \
	  echo "python3-venv is missing; installing it with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv python3-pip; \
	fi

# After the pins, the project itself, editable, for the `s3pk` command: --no-deps (the
# line before installs them) and no build isolation (the backend is the pinned
# setuptools). The filtered message is setuptools' generic note on every editable install.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip==26.3
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	PYTHONWARNINGS="ignore:Editable installation." $(BIN)/python -m pip install -q \
	  --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m ops sandbox --scenario seed $(PORT_ARG)

sandbox: $(STAMP)
	$(BIN)/python -m ops sandbox $(PORT_ARG)

bench: $(STAMP)
	$(BIN)/python -m bench.enforcer
	$(BIN)/python -m bench.backfill

lint: $(STAMP)
	$(BIN)/ruff check .

# mutmut's settings are in pyproject.toml [tool.mutmut]. A fresh mutants/ each run: mutmut
# skips copying files it already has, so an old copy would test old sources. The score is
# mutmut's (killed + timeout over all mutants); "no fast test" mutants count against it.
mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	@$(BIN)/mutmut results --all true | awk -F': ' ' \
	  { split($$1, name, "."); f = "enforcer/" name[2] ".py"; total[f]++ } \
	  $$2 == "killed" || $$2 == "timeout" { killed[f]++ } \
	  $$2 == "no tests" { untested[f]++ } \
	  END { for (f in total) printf "%s: %d of %d mutants killed (%.1f%%), %d with no fast test\n", \
	        f, killed[f], total[f], 100 * killed[f] / total[f], untested[f] }' | sort

# The README's screenshot of the HTML audit report, from the in-process demo
# (ops/audit_html_demo.py). Debian's chromium renders it headless; like system-deps, the
# target installs it when it is missing (as root, or via sudo). The flags keep Chromium
# off the network and away from any existing profile.
SCREENSHOT := docs/audit-report.png
report-screenshot: $(STAMP)
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "chromium is missing; installing it with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@# Headless Chromium logs D-Bus errors on a machine without a session bus: kept in a
	@# log that is shown only when the screenshot fails.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(BIN)/python -m ops.audit_html_demo "$$tmp/audit-report.html" && \
	  if chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	    --disable-background-networking --disable-component-update --disable-sync \
	    --user-data-dir="$$tmp/profile" --screenshot="$(CURDIR)/$(SCREENSHOT)" \
	    --window-size=1200,1600 "file://$$tmp/audit-report.html" >"$$tmp/chromium.log" 2>&1; \
	  then echo "wrote $(SCREENSHOT)"; else cat "$$tmp/chromium.log"; exit 1; fi

constraints: $(STAMP)
	( echo "# Full transitive pin set (pip freeze of a venv built from requirements-dev.txt)."; \
	  echo "# Regenerate with: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
