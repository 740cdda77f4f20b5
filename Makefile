# Two entry points: `make demo` and `make test`. Each builds .venv from nothing if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration lint bench bench-quick clean system-tools kafka-jars

# System tools the tests run, from Debian's packages (command:package): promtool (prometheus:
# rule tests, `check metrics`; the package also has the server), chromium (the lag status
# page's browser test; fonts-liberation renders its text), redis-server, and Java and Maven
# for the Apache Kafka the integration tests and the bench run (kafka-jars). Idempotent:
# nothing is fetched when all are present, and `apt-get update` runs once, only when one is
# missing.
SYSTEM_TOOLS := promtool:prometheus chromium:chromium redis-server:redis-server \
	java:default-jre-headless mvn:maven

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stream-infer demo

# Apache Kafka's jars from Maven Central into ~/.m2 (once; later runs read the cached classpath).
kafka-jars: $(STAMP) system-tools
	$(BIN)/stream-infer broker fetch

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

test: $(STAMP) system-tools kafka-jars
	$(BIN)/ruff check .
	$(BIN)/mypy stream_infer loadgen bench
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP) kafka-jars
	$(BIN)/pytest tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy stream_infer loadgen bench

bench: $(STAMP) kafka-jars
	$(BIN)/python -m bench

bench-quick: $(STAMP) kafka-jars
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) var registry build *.egg-info
