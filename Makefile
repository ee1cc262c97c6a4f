# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-test demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, from the CPU wheel: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.13.0
	touch $@

$(VENV)/.ponder: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	touch $@

# The references the tests compare against (llama-cpp-python builds from source once, ~10 min).
# On a CPU with AMX, llama.cpp built for it crashes in its AMX matmul: built again without AMX there.
$(VENV)/.ponder-test: pyproject.toml $(VENV)/.ponder
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python benchmarks/llama_cpp_tools.py rebuild-without-amx
	touch $@

# Headless Chromium for the page tests, from Debian's packages where this machine can install them (the tests skip
# with a reason where it cannot).
$(VENV)/.browser: | $(BIN)/python
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "no Chromium: the page tests will skip"
	touch $@

setup: $(VENV)/.ponder
setup-test: $(VENV)/.ponder-test $(VENV)/.browser

demo: setup
	$(BIN)/ponder pull qwen2.5-coder-0.5b-instruct
	$(BIN)/ponder demo  # one sample beside thinking harder, then what each measured on held-out questions

test: setup-test
	$(BIN)/ponder pull smollm2-135m-instruct
	$(BIN)/ponder pull qwen2.5-coder-0.5b-instruct
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)

bench: setup-test
	$(BIN)/python benchmarks/bench_runtime.py
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build src/*.egg-info
