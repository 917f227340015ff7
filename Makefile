# Two commands do all the set-up on a fresh machine (README):
#   make demo   - phantom cases through the whole pipeline on embedded defaults
#   make test   - the default test suite (what .ci/run calls)
# Each creates .venv on first use. torch is pinned to 2.13.0 (CPU build on this machine);
# see README "GPU install" for CUDA machines.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-slow test-all bench lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/aooct demo

lint: $(STAMP)
	$(VENV)/bin/lint-imports

# Default suite: everything but the slow accuracy/benchmark suites.
test: $(STAMP)
	bash scripts/test_services.sh
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow and not gpu" -p no:cacheprovider

# Accuracy suites on ../shared/data and phantoms (minutes each); run on their own.
test-slow: $(STAMP)
	$(PY) -m pytest -m "slow" -p no:cacheprovider

bench: $(STAMP)
	bash bench/run_cpu_benchmarks.sh

clean:
	rm -rf $(VENV) .aooct_home demo_out
