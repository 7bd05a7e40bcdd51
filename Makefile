# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
SHARED_DATA ?= ../shared/data
export PYTHONUNBUFFERED := 1

.PHONY: setup demo demo-train test test-all bench clean

setup:
	@bash dev/setup_venv.sh
	@# Datasets too large for git: use the shared copies when this checkout has them beside it.
	@for name in dsb2018 segpc_lowres segpc_nikon; do \
		if [ -d "$(SHARED_DATA)/$$name" ] && [ ! -e datasets/$$name ]; then \
			ln -s "$$(cd $(SHARED_DATA)/$$name && pwd)" datasets/$$name; fi; done

demo: setup
	$(PY) demo/demo.py --output output/demo

# The same job with both models first trained from scratch on the sample (about 15 minutes on 2 cores).
demo-train: setup
	$(PY) demo/demo.py --output output/demo-train --train

test: setup
	$(PY) -m pytest -q --durations=15 -m "not slow"

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks.benchmark --output benchmarks/RESULTS.md

clean:
	rm -rf output .pytest_cache
