# Two entry points: `make demo` and `make test`. Each builds .venv from nothing if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration lint bench bench-quick clean system-tools

# System tools the tests run, from Debian's packages (command:package): promtool (prometheus:
# rule tests, `check metrics`; the package also has the server), chromium (the lag status
# page's browser test; fonts-liberation renders its text) and redis-server. Idempotent:
# nothing is fetched when all are present, and `apt-get update` runs once, only when one is
# missing.
SYSTEM_TOOLS := promtool:prometheus chromium:chromium redis-server:redis-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stream-infer demo

system-tools:
	@missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	case "$$missing" in *chromium*) missing="$$missing fonts-liberation";; esac; \
	if [ -n "$$missing" ]; then \
		echo "system-tools: installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: $(STAMP) system-tools
	$(BIN)/ruff check .
	$(BIN)/mypy stream_infer loadgen bench
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy stream_infer loadgen bench

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) var registry build *.egg-info
