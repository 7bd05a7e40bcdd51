# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
SHARED_DATA ?= ../shared/data
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-all bench clean

setup:
	@bash dev/setup_venv.sh
	@# DSB2018 is too large for git: use the shared copy when this checkout has one beside it.
	@if [ -d "$(SHARED_DATA)/dsb2018" ] && [ ! -e datasets/dsb2018 ]; then \
		ln -s "$$(cd $(SHARED_DATA)/dsb2018 && pwd)" datasets/dsb2018; fi

demo: setup
	$(PY) demo/demo.py --output output/demo

test: setup
	$(PY) -m pytest -q --durations=15 -m "not slow"

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks.benchmark --output benchmarks/RESULTS.md

clean:
	rm -rf output .pytest_cache
