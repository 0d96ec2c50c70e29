# `make demo` and `make test` create .venv/ when absent, install Vitrina into it, then run.
PYTHON ?= python3
VENV := .venv
EXTRAS ?= cpu
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: demo test install clean-venv

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e ".[$(EXTRAS),dev]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vitrina demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

clean-venv:
	rm -rf $(VENV)
