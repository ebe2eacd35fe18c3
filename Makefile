# Belfry — developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LISTEN ?= 127.0.0.1:7711

.DEFAULT_GOAL := help
.PHONY: help run test lint format bench bench-failover bench-scale bench-history bench-batching chaos screenshots clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed ## Start a single-node server (SQLite, embedded worker) with examples/jobs.yaml applied
	@scripts/run-local.sh $(LISTEN)

test: $(BIN)/.installed ## Run the whole test suite (SQLite and PostgreSQL)
	@scripts/ensure-postgres.sh
	@scripts/ensure-system-packages.sh
	@# Most tests wait on subprocesses and timers: four at a time on two cores. The browser
	@# tests run in processes of their own; those that measure failover or clocks run
	@# alone, last. Every part runs even when an earlier one failed.
	@status=0; \
	$(BIN)/pytest -n 4 --dist worksteal -m "not serial and not ui" --durations=25 || status=$$?; \
	$(BIN)/pytest -n 3 --dist worksteal -m ui || status=$$?; \
	$(BIN)/pytest -m serial || status=$$?; \
	exit $$status

lint: $(BIN)/.installed ## ruff, mypy --strict, import-linter layer contracts
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(BIN)/.installed ## Format and auto-fix
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(BIN)/.installed ## Schedule maths speed; schedule-to-start latency (embedded worker, then remote workers)
	@scripts/ensure-postgres.sh
	$(BIN)/python bench/schedule_speed.py
	$(BIN)/python bench/fire_latency.py
	$(BIN)/python bench/fire_latency.py --db postgresql --workers 2 --jobs 10,100,400

bench-failover: $(BIN)/.installed ## Failover time over 20 leader kills and 20 graceful handovers (3 servers, 2 workers)
	@scripts/ensure-system-packages.sh
	$(BIN)/python bench/failover.py --rounds 20

bench-scale: $(BIN)/.installed ## 100,000 jobs on PostgreSQL: apply, start-up, RSS, idle CPU, a 1,000-run burst, API latency
	@scripts/ensure-postgres.sh
	$(BIN)/python bench/scale.py

bench-history: $(BIN)/.installed ## 100,000 jobs, 10 million runs on PostgreSQL: seeding, sizes, job/runs API latency, firing while pruning
	@scripts/ensure-postgres.sh
	$(BIN)/python bench/history.py

bench-batching: $(BIN)/.installed ## Fire, claim and report writes on PostgreSQL, unbatched vs batched: throughput, light-load latency
	@scripts/ensure-postgres.sh
	$(BIN)/python bench/batching.py

chaos: $(BIN)/.installed ## Fault injection for 30 min (>= 100 faults): duplicates, misses, early starts, failover times
	@scripts/ensure-system-packages.sh
	$(BIN)/python bench/chaos.py --minutes $${CHAOS_MINUTES:-30}

screenshots: $(BIN)/.installed ## Screenshots of the web UI into docs/screenshots (light, dark, phone)
	@scripts/ensure-system-packages.sh
	$(BIN)/python scripts/ui-screenshots.py

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
