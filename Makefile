# The two commands (see README):
#   make demo   create the environment in .venv (if needed) and run the default job
#   make test   create the environment in .venv (if needed) and run every test
#
# The environment is made by Backend/install.py (which also runs without make, on Windows and
# macOS: see README) and rebuilt when Backend/pyproject.toml, this file or install.py changes.
# On a machine without a GPU, torch is the CPU build (torch==2.13.0); on a CUDA machine set
# TORCH to a CUDA build, e.g. `make demo TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test env clean-env

demo: $(STAMP)
	$(BIN)/attumamba-seg demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

env: $(STAMP)

$(STAMP): Backend/pyproject.toml Makefile Backend/install.py
	$(PYTHON) Backend/install.py --venv $(VENV) --torch "$(TORCH)"

clean-env:
	rm -rf $(VENV)
