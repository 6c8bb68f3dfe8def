# Each target sets up .venv on first use; later runs reuse it until pyproject.toml changes.
# jaxrnn itself is installed into .venv from the wheel built from this tree, as users install it,
# and rebuilt when a file of the package changes: the demo and the tests run that wheel, never the
# source tree (PYTHONSAFEPATH keeps the working directory off sys.path), so a file the wheel
# leaves out fails the tests. The benchmarks run from the tree (python -m benchmarks ...), so the
# native kernels the wheel was built with are copied into it too.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
WHEEL := $(VENV)/.wheel
PACKAGE_FILES := $(shell find jaxrnn -type f -not -path '*/__pycache__/*' -not -name '*.so') pyproject.toml setup.py LICENSE

.PHONY: demo test lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet ".[dev,docs,bench,notebooks]"
	touch $(STAMP)

$(WHEEL): $(STAMP) $(PACKAGE_FILES)
	rm -rf build/lib build/dist && mkdir -p build
	$(VENV)/bin/python -m build --wheel --no-isolation --outdir build/dist . > build/wheel.log
	$(VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall build/dist/jaxrnn-*.whl
	find build -path '*/jaxrnn/_native/_kernels*.so' -exec cp {} jaxrnn/_native/ \;
	touch $(WHEEL)

demo: $(WHEEL)
	PYTHONSAFEPATH=1 $(VENV)/bin/python -m jaxrnn.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The site's strict build and every example in it run inside the suite (tests/test_docs.py).
# --dist worksteal: a worker that has run out of tests takes half of what the other still holds;
# with the default (load) one worker ran the other's last 26 s of tests alone.
test: lint $(WHEEL)
	PYTHONSAFEPATH=1 JAXRNN_UNDER_TEST=wheel $(VENV)/bin/python -m pytest -n 2 --dist worksteal --durations=30

docs: $(WHEEL)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/python -m mkdocs build --strict

bench: $(WHEEL)
	$(VENV)/bin/python -m benchmarks --full

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .hypothesis
