# The two commands of the README: `make demo` (offline demo) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
API_PORT ?= 8765
UI_PORT ?= 3000
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: install system-deps demo test lint ui pools instance-files spark-cluster spark-cluster-stop benchmark benchmark-smoke benchmark-airflow-setup clean

$(BIN)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# Installs, then creates (or migrates) the instance's storage once, before any command uses it:
# processes started together on a fresh SQLite instance would otherwise race to create the same
# tables ("table alembic_version already exists", dagster issue #2124).
install: $(BIN)/.installed
	@mkdir -p "$(DAGSTER_HOME)"
	@$(BIN)/dagster instance migrate >/dev/null

# Servers the tests start themselves but cannot install: PostgreSQL, Redis (the Celery broker), and Debian's Chromium for
# the browser test (Playwright drives /usr/bin/chromium; never `playwright install`). Installed
# with apt-get when running as root; elsewhere their tests skip and say why (under CI=true they fail).
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "note: PostgreSQL server not installed (apt-get install postgresql): its tests will skip"; fi; \
	fi
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "note: Redis not installed (apt-get install redis-server): the Celery tests will skip"; fi; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: Chromium not installed (apt-get install chromium): the browser tests will skip"; fi; \
	fi

demo: install
	$(BIN)/python -m user_pipeline_tools.demo --api-port $(API_PORT)

# Lint, format and the import contracts first (pyproject.toml: [tool.ruff], [tool.importlinter]),
# then the tests on two workers (a third made the suite slower on 2 cores: it is CPU-bound), each
# taking whole test files, the longest first (their services are shared per file); the slowest
# tests are listed at the end. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: install system-deps lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The Dagster UI (webserver + daemon + code server, `dg dev`) on the demo's data, with the bundled
# API server so that new runs work offline; alert links point at this UI's port. Ctrl-C (or SIGTERM)
# terminates the runs in progress and stops every process it started (user_pipeline_tools/ui_stack.py).
ui: install
	@$(BIN)/python -m user_pipeline_tools.ui_stack --ui-port $(UI_PORT) --api-port $(API_PORT)

# A standalone Spark master + worker on loopback (from the installed PySpark); then
# SPARK_MASTER=spark://127.0.0.1:7077 runs the Spark ingestion on it.
spark-cluster: install
	$(BIN)/python -m user_pipeline_tools.spark_cluster start

spark-cluster-stop:
	$(BIN)/python -m user_pipeline_tools.spark_cluster stop

# The users_api pool's limit in the instance (DAGSTER_HOME), from USER_PIPELINE_USERS_API_POOL_LIMIT
# (default 2); `make ui` applies it too. Other pools stay unlimited.
pools: install
	$(BIN)/python -m user_pipeline_tools.pools

# dagster_home/postgres/dagster.yaml is dagster_home/dagster.yaml plus a storage block: edit the
# latter, then write the former with this (a test checks they agree).
instance-files:
	$(BIN)/python -m user_pipeline_tools.instance_files

# Orchestration overhead and scaling against the same work without an orchestrator
# (a table on stdout; docs/benchmarks.md holds one run). The smoke mode also runs in `make test`.
benchmark: install
	$(BIN)/python -m benchmarks.run

benchmark-smoke: install
	$(BIN)/python -m benchmarks.run --smoke

# The benchmark's Airflow peer: Apache Airflow in its own venv, .venv-airflow, from the pinned set in
# benchmarks/airflow/requirements.txt (then `.venv/bin/python -m benchmarks.run --airflow-smoke`).
benchmark-airflow-setup:
	$(PYTHON) -m venv .venv-airflow
	.venv-airflow/bin/pip install --quiet --upgrade pip
	.venv-airflow/bin/pip install --quiet -r benchmarks/airflow/requirements.txt

clean:
	rm -rf data .spark-cluster dagster_home/storage dagster_home/history dagster_home/logs dagster_home/schedules

# The Celery executor (docs/celery.md): Redis as broker and result backend, workers, Flower.
# Each runs in the foreground until Ctrl-C. Redis and the workers need USER_PIPELINE_REDIS_PASSWORD;
# Flower needs USER_PIPELINE_FLOWER_BASIC_AUTH=user:password. Runs use the workers once
# USER_PIPELINE_EXECUTOR=celery is set where the code location and the daemon run.
REDIS_PORT ?= 6379
REDIS_BIND ?= 127.0.0.1
WORKERS ?= 2
WORKER_CONCURRENCY ?= 2
WORKER_QUEUES ?= users_api,dagster,spark
WORKER_NAME ?= worker
FLOWER_PORT ?= 5555
FLOWER_BIND ?= 127.0.0.1
CELERY_DIR ?= .celery

.PHONY: redis workers flower
redis: install
	$(BIN)/python -m user_pipeline_tools.celery_services redis --port $(REDIS_PORT) --bind $(REDIS_BIND) --dir $(CELERY_DIR)/redis

workers: install
	$(BIN)/python -m user_pipeline_tools.celery_services workers --count $(WORKERS) --concurrency $(WORKER_CONCURRENCY) \
	  --queues $(WORKER_QUEUES) --name $(WORKER_NAME) --dir $(CELERY_DIR)/workers

flower: install
	$(BIN)/python -m user_pipeline_tools.celery_services flower --port $(FLOWER_PORT) --bind $(FLOWER_BIND) --dir $(CELERY_DIR)/flower
