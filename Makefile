# `make demo` and `make test` create .venv/ when absent, install Vitrina into it, then run.
PYTHON ?= python3
VENV := .venv
EXTRAS ?= cpu
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: demo test install bytecode clean-venv

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e ".[$(EXTRAS),dev]"
	$(MAKE) bytecode
	touch $@

# Compile Vitrina's modules once, as a wheel install does (an editable install compiles nothing, and where
# PYTHONDONTWRITEBYTECODE is set every `vitrina` process would compile ~80 modules: 0.1-0.2 s of a search).
bytecode:
	$(VENV)/bin/python -m compileall -q vitrina engine encoders index serving

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vitrina demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

clean-venv:
	rm -rf $(VENV)
