# Each target sets up .venv on first use; later runs reuse it until pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev,bench,notebooks]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m jaxrnn.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/python -m pytest -n 2 --durations=30

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks --full

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
