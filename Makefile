# `make demo`: the offline end-to-end demo.   `make test`: ruff, then the whole test suite.
# The quick loop while working: .venv/bin/python -m pytest -m "not slow" tests
# Both create .venv and install everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test lint demo venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision first, at the versions the build machines hold on local disk
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	# the test extras at the versions the suite was last run with (constraints-test.txt: no resolver backtracking)
	$(PY) -m pip install --quiet -e '.[test]' -c constraints-test.txt
	touch $@

# ruff (configured in pyproject.toml) first: a lint error stops the run before the tests
lint: venv
	$(VENV)/bin/ruff check src tests

test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

demo: venv
	$(VENV)/bin/text4vis demo --out demo-report

clean:
	rm -rf $(VENV) demo-report .pytest_cache
