# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint bench bench-smoke soak clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py

# the bench extra too: tests/test_bench_smoke.py runs a tiny bench against every peer so it cannot rot
test: $(VENV)/.bench
	$(PY) -m ruff check honeydew tests benchmarks examples
	$(PY) -m pytest

bench: $(VENV)/.bench
	$(PY) -m benchmarks.run

bench-smoke: $(VENV)/.bench
	$(PY) -m benchmarks.run --smoke

# the 30-minute soak: random kills every 200-500 ms, zero jobs lost, memory flat (docs/reliability.md)
soak: $(VENV)/.installed
	HONEYDEW_SOAK_MINUTES=30 HONEYDEW_SOAK_REPORT=soak-report.json $(PY) -m pytest tests/faults/test_soak.py -s

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
