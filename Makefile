# ganrun: `make train` trains the default experiment, `make test` runs the tests.
# Both install what they need first (a .venv with torch, the project and its test extras).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch/torchvision for this machine kind (served from local disk here); override for others,
# e.g. `make install TORCH_SPEC=` to keep whatever torch the environment resolves.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install data train test test-full clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(strip $(TORCH_SPEC)),$(PY) -m pip install -q $(TORCH_SPEC))
	$(PY) -m pip install -q -e ".[test,export,optuna]"
	touch $(STAMP)

install: $(STAMP) data ## create .venv and install ganrun with its test, export and optuna extras (and Fashion-MNIST)

data: ## Fashion-MNIST from Debian's dataset-fashion-mnist where apt and root are at hand
	@if [ -f $(FASHION)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: apt could not install dataset-fashion-mnist; make train will try torchvision's download"; \
	else echo "note: Fashion-MNIST not in $(FASHION); make train will try torchvision's download"; fi

train: install ## train the default experiment (MLP GAN on Fashion-MNIST); ARGS="..." adds overrides
	$(VENV)/bin/ganrun train $(if $(wildcard $(FASHION)/train-images-idx3-ubyte.gz),,dataset.download=true) $(ARGS)

test: install ## run the fast tests
	$(PY) -m pytest -m "not slow and not gpu" $(ARGS)

test-full: install ## run every test, slow ones included
	$(PY) -m pytest $(ARGS)

clean: ## remove the venv and run outputs
	rm -rf $(VENV) outputs
