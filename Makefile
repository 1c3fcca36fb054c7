# Two commands a new user needs: `make demo` and `make test`. Each creates .venv if missing and
# installs the exact versions in requirements.lock before it runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-learning test-all lint format bench lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow and not learning" --durations=25 $(PYTEST_ARGS)

# The long integration checks left out of `make test` for time (CI runs them).
test-slow: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -m "slow and not learning" $(PYTEST_ARGS)

test-learning: $(STAMP)
	$(PY) -m pytest -m learning -s $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) benchmarks/render.py

# Refresh requirements.lock from the current environment (after changing pyproject.toml).
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) .cache runs
