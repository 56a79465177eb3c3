# Two commands on a fresh clone: `make search` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first so the CPU build on this machine's disk is used;
# set TORCH_SPEC= (empty) to keep whatever torch your environment has.
TORCH_SPEC ?= torch==2.13.0
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

.PHONY: setup search test lint bench clean

$(BIN)/nas-sr: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/nas-sr

search: setup  ## the default search on the embedded photographs (a few minutes on CPU)
	$(BIN)/nas-sr search $(ARGS)

test: setup  ## the test suite (real data tests skip when ../shared/datasets is absent)
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup  ## the benchmark table (docs/RESULTS.md)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
