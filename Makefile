# The two commands of the README: `make quickstart` (set up, then run the main job on the
# embedded default model, offline) and `make test` (set up, then run the whole test suite).
# Both create or reuse .venv; it is re-installed when pyproject.toml, setup.py or this file change.

PYTHON ?= python3
VENV ?= .venv
# torch first and pinned: pip then takes the CPU build, not a multi-GB CUDA one
# (elsewhere: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make ...).
# The ray extra too: the Ray serving and batch tests run on a real local cluster in CI.
INSTALL = $(VENV)/bin/pip install torch==2.13.0 -e '.[convert,bench,test,ttm,ray]'
# granite-tsfm (TinyTimeMixer) pins torch<2.12: its own dependencies come with the ttm extra
# above, and it goes on top with --no-deps, so the CPU torch stays (README, "Install").
INSTALL_TSFM = $(VENV)/bin/pip install --no-deps granite-tsfm==0.3.11
STAMP = $(VENV)/.ovcast-installed

.PHONY: install quickstart test system-deps

install: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(INSTALL)
	$(INSTALL_TSFM)
	touch $@

quickstart: $(STAMP)
	$(VENV)/bin/ovcast quickstart

# What the tests need from the system: Debian's Chromium for the dashboard's browser tests,
# g++ for the C++ client's tests (as root, or with passwordless sudo). Without them those
# tests skip and say how to install what is missing.
SYSTEM_PACKAGES = $(if $(OVCAST_CHROMIUM),,$(if $(shell command -v chromium),,chromium)) \
                  $(if $(shell command -v g++),,g++)

system-deps:
	@if [ -z "$(strip $(SYSTEM_PACKAGES))" ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: no apt-get here: install $(strip $(SYSTEM_PACKAGES)) or their tests skip" >&2; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq $(SYSTEM_PACKAGES); \
	elif sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo apt-get install -y -qq $(SYSTEM_PACKAGES); \
	else \
	  echo "make: cannot install $(strip $(SYSTEM_PACKAGES)) without root: their tests skip" >&2; \
	fi

# pytest's exit code 5 (no tests collected) is a failure here too.
test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; exit 1; fi; exit $$rc
