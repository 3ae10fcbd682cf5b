# The two commands (see README):
#   make demo   create the environment in .venv (if needed) and run the default job
#   make test   create the environment in .venv (if needed) and run every test
#
# The environment is rebuilt when Backend/pyproject.toml changes. On a machine without a
# GPU, torch is the CPU build (torch==2.13.0); on a CUDA machine set TORCH to a CUDA build,
# e.g. `make demo TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
# Installed without their dependencies (those are listed in Backend/pyproject.toml): the
# networks package's timm requirement would pull torchvision and a CUDA torch.
NNUNET_PACKAGES := nnunetv2==2.8.1 dynamic-network-architectures==0.4.4
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test env clean-env

demo: $(STAMP)
	$(BIN)/attumamba-seg demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

env: $(STAMP)

$(STAMP): Backend/pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e "Backend[test]"
	$(BIN)/python -m pip install --quiet --no-deps $(NNUNET_PACKAGES)
	touch $(STAMP)

clean-env:
	rm -rf $(VENV)
