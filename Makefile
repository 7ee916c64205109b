# Two entry points: `make demo` runs the main job, `make test` runs the tests.
# Each creates its own virtual environment (.venv) and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev

.PHONY: demo test test-fast bench env clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
	uv venv -q --allow-existing -p 3.11 $(VENV)
	uv pip install -q -p $(PY) -e '.[$(EXTRAS)]'
	@touch $@

env: $(VENV)/.installed-$(EXTRAS)

demo: $(VENV)/.installed-$(EXTRAS)
	$(VENV)/bin/segzero demo --out demo-output

# Every test, the slow ones too, then the 15 slowest with their times.
test: $(VENV)/.installed-$(EXTRAS)
	$(PY) -m pytest -q --runslow --durations=15 $(PYTEST_ARGS)

# The tests without those marked slow (over 30 s each on a 2-core CPU).
test-fast: $(VENV)/.installed-$(EXTRAS)
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

bench: $(VENV)/.installed-$(EXTRAS)
	$(PY) benchmarks/pipeline.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
