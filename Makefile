# The two commands of the README: `make quickstart` (set up, then run the main job on the
# embedded default model, offline) and `make test` (set up, then run the whole test suite).
# Both create or reuse .venv; it is re-installed when pyproject.toml or setup.py change.

PYTHON ?= python3
VENV ?= .venv
# torch first and pinned: pip then takes the CPU build, not a multi-GB CUDA one
# (elsewhere: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make ...).
INSTALL = $(VENV)/bin/pip install torch==2.13.0 -e '.[convert,bench,test]'
STAMP = $(VENV)/.ovcast-installed

.PHONY: install quickstart test chromium

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(INSTALL)
	touch $@

quickstart: $(STAMP)
	$(VENV)/bin/ovcast quickstart

# Debian's Chromium for the dashboard's browser tests (as root, or with passwordless sudo);
# without it those tests skip and say how to install it.
chromium:
	@if [ -n "$$OVCAST_CHROMIUM" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: no apt-get here: the browser tests will skip (set OVCAST_CHROMIUM to a Chromium)" >&2; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq chromium; \
	elif sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	else \
	  echo "make: cannot install Chromium without root: the browser tests will skip" >&2; \
	fi

# pytest's exit code 5 (no tests collected) is a failure here too.
test: $(STAMP) chromium
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; exit 1; fi; exit $$rc
