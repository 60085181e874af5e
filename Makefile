# Two commands: `make demo` and `make test`. Both build .venv when it is missing or
# when pyproject.toml is newer than the last install.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

SHELL := bash
# Installed, runtime/ is the package `greenroom` and actors/ is `greenroom.actors`; the
# import linter and mypy read a copy laid out that way (the editable install maps the
# folders with an import hook, which neither follows).
STAGE := build/stage

.PHONY: demo live test services services-stop crash bench lint lint-imports typecheck docs stage format clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python examples/multi_agent_host.py

# The demo's world without an end, on the real clock, served on http://127.0.0.1:8765/.
live: $(STAMP)
	$(VENV)/bin/python examples/multi_agent_host.py --live

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory lint-imports typecheck docs
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

# PostgreSQL and Redis on 127.0.0.1 for the backend suites (data under build/services):
# `eval "$$(make -s services)"` sets GREENROOM_PG_URL and GREENROOM_REDIS_URL, which
# `make test` then uses; without them it skips those suites and says so.
services:
	@.ci/services start

services-stop:
	@.ci/services stop

stage:
	rm -rf $(STAGE) && mkdir -p $(STAGE)
	cp -r runtime $(STAGE)/greenroom && cp -r actors $(STAGE)/greenroom/actors
	find $(STAGE) -name __pycache__ -prune -exec rm -rf {} +

# The layers of pyproject.toml's [tool.importlinter] contracts: zero broken contracts.
lint-imports: $(STAMP) stage
	PYTHONPATH=$(STAGE) $(VENV)/bin/lint-imports pyproject.toml --no-cache

# mypy --strict over the package, the examples and the typed tour of the public surface;
# paths are shown as the repository has them.
typecheck: $(STAMP) stage
	set -o pipefail; MYPYPATH=$(STAGE) $(VENV)/bin/mypy --strict $(STAGE)/greenroom \
	    examples tests/test_typed_surface.py \
	  | sed -e 's#^$(STAGE)/greenroom/actors/#actors/#' -e 's#^$(STAGE)/greenroom/#runtime/#'

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

# The kill -9 harness (tests/test_crash.py) at full strength: 100 kills per scenario and
# one figure line each (`make test` runs the same scenarios with 5 kills).
crash: $(STAMP)
	GREENROOM_CRASH_KILLS=100 $(VENV)/bin/python -m pytest -m crash -p no:xdist -s

# Every script under benchmarks/, then one table (BENCH_ARGS=--quick for a smoke run,
# BENCH_ARGS="--markdown perf.md" to write the table as Markdown too).
bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
