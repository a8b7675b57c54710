# adplan: every target creates .venv and installs the project first if needed.
# Override variables on the command line, e.g. `make plan BUDGET=8000 DAYS=7`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

OUT       ?= out
MARKET    ?= $(OUT)/market
EVENTS    ?= $(MARKET)/events.csv
AUDIENCES ?= $(MARKET)/audiences.csv
TRUTH     ?= $(MARKET)/truth.json
MODEL     ?= $(OUT)/model
PLAN      ?= $(OUT)/plan
SIM       ?= $(OUT)/simulation
WHATIF    ?= $(OUT)/whatif
FRONTIER  ?= $(OUT)/frontier
REPORT    ?= reports/out/report.html
BUDGET    ?= 4000
DAYS      ?= 14
SEED      ?= 0
RUNS      ?= 200
SCENARIO  ?= simulations/scenarios/*.toml
N_AUDIENCES ?= 24

.PHONY: demo test test-devices bench bench-allocator bench-quality bench-rules bench-scaleout bench-cli lint fmt data train plan simulate whatif frontier report clean install browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

DEMO_STAGES := data train plan simulate whatif frontier report

# Each stage's wall time is printed after it, and the total at the end.
demo: $(STAMP)
	@begin=$$(date +%s%N); times=""; \
	for stage in $(DEMO_STAGES); do \
	  start=$$(date +%s%N); \
	  $(MAKE) --no-print-directory $$stage || exit 1; \
	  took=$$(( ($$(date +%s%N) - start) / 1000000 )); \
	  line=$$(printf '%-9s %4d.%d s' $$stage $$((took / 1000)) $$((took % 1000 / 100))); \
	  echo "== $$line"; times="$$times$$line\n"; \
	done; \
	took=$$(( ($$(date +%s%N) - begin) / 1000000 )); \
	echo ""; echo "Stage times:"; printf "$$times"; \
	printf '%-9s %4d.%d s\n' total $$((took / 1000)) $$((took % 1000 / 100))
	@echo ""
	@echo "Done. Your spend plan:  $(PLAN)/plan.csv  (details: $(PLAN)/plan.json)"
	@echo "      Simulation:       $(SIM)/summary.csv"
	@echo "      What-if:          $(WHATIF)/comparison.csv    Frontier: $(FRONTIER)/frontier.csv"
	@echo "      Report:           $(REPORT)  (open it in a browser)"

data: $(STAMP)
	$(BIN)/adplan generate --out $(MARKET) --audiences $(N_AUDIENCES) --days 14 --seed $(SEED)

train: $(STAMP)
	$(BIN)/adplan train --events $(EVENTS) --out $(MODEL) --seed $(SEED)

plan: $(STAMP)
	$(BIN)/adplan plan --model $(MODEL) --budget $(BUDGET) --days $(DAYS) $(if $(wildcard $(AUDIENCES)),--audiences $(AUDIENCES)) --out $(PLAN)

simulate: $(STAMP)
	$(BIN)/adplan simulate --model $(MODEL) --plan $(PLAN) --runs $(RUNS) --seed $(SEED) $(if $(wildcard $(TRUTH)),--truth $(TRUTH)) --out $(SIM)

whatif: $(STAMP)
	$(BIN)/adplan whatif --model $(MODEL) --plan $(PLAN) $(foreach s,$(wildcard $(SCENARIO)),--scenario $(s)) --out $(WHATIF)

frontier: $(STAMP)
	$(BIN)/adplan frontier --model $(MODEL) --budgets $$(($(BUDGET)/4)):$$(($(BUDGET)*2)):40 --days $(DAYS) $(if $(wildcard $(AUDIENCES)),--audiences $(AUDIENCES)) $(if $(wildcard $(PLAN)/plan.json),--plan $(PLAN)) --out $(FRONTIER)

report: $(STAMP)
	$(BIN)/adplan report --model $(MODEL) --plan $(PLAN) $(if $(wildcard $(SIM)/summary.json),--simulation $(SIM)) $(if $(wildcard $(WHATIF)/comparison.csv),--whatif $(WHATIF)) $(if $(wildcard $(FRONTIER)/frontier.csv),--frontier $(FRONTIER)) --out $(REPORT)

# Headless Chromium for the report's browser test; skipped quietly where it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "note: chromium not installed; the browser test will be skipped"; }

# Two test processes (one per core on CI); a test file stays in one process so its
# module fixtures are built once. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "not devices" $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# Sharding over emulated devices and multi-process training (about 4 minutes).
test-devices: $(STAMP)
	$(BIN)/python -m pytest -q -m devices $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run all

bench-allocator: $(STAMP)
	$(BIN)/python -m benchmarks.run allocator

bench-quality: $(STAMP)
	$(BIN)/python -m benchmarks.run quality

bench-rules: $(STAMP)
	$(BIN)/python -m benchmarks.run rules

bench-scaleout: $(STAMP)
	$(BIN)/python -m benchmarks.run scaleout

bench-cli: $(STAMP)
	$(BIN)/python -m benchmarks.run cli

clean:
	rm -rf $(OUT) reports/out .pytest_cache .ruff_cache .hypothesis
