# The two commands a fresh clone needs: `make run` and `make test`.
# Both bootstrap uv (from PyPI) when it is missing and sync the locked environment first.
SHELL := /bin/bash
PYTHON ?= python3
# A uv on PATH (or the one `uv run` names in $UV), else uv as a module of $(PYTHON): inside an
# activated or `uv run` environment, python3 is the project's venv, which has neither uv nor pip.
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --no-sync

# Nothing phones home (the library sets these too; child processes inherit them from here).
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
# Install with compiled bytecode: uv does not compile by default, and where Python may not
# write it either (PYTHONDONTWRITEBYTECODE, a read-only venv) every command recompiles
# TensorFlow's and MLflow's sources on each start: `clearsight explain` took 21 s, not 9 s.
export UV_COMPILE_BYTECODE := 1

COMPOSE := docker compose -f docker/compose.yaml
# mypy's cache outside the checkout, like uv's: a fresh clone checks in seconds, not 90 s (mypy
# re-checks every module whose source hash changed, so a stale entry is never trusted).
MYPY_CACHE_DIR ?= $(HOME)/.cache/clearsight/mypy
# The Keras backend's extra (tensorflow, jax, torch; gpu or jax-gpu for CUDA): TensorFlow by default.
BACKEND_EXTRA ?= tensorflow

.PHONY: setup run test test-journeys test-faults lint browser strace schedule ui serving-requirements stack-up stack-demo stack-faults stack-down stack-lint

setup:  ## install uv if missing, then the locked environment (Python 3.12)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --locked --quiet --extra $(BACKEND_EXTRA)

run: setup  ## the whole pipeline on the embedded data (Prefect flow, ephemeral API)
	$(RUN) clearsight retrain

schedule: setup  ## prefect.yaml's deployments on a loopback Prefect server, with a process worker
	$(RUN) python -m flows.schedule  # server, pool, registry limit, `prefect deploy --all`, worker

ui: setup  ## the MLflow UI on the local store, http://127.0.0.1:5000
	$(RUN) clearsight ui

test: setup lint browser  ## lint, then the test suite (slow end-to-end tests included; faults apart)
	$(RUN) pytest -m "not faults and not journeys" --durations=20

test-journeys: setup  ## your own images (word-named, 8x8, colour folders) through the whole loop
	$(RUN) pytest -s -m journeys tests/journeys --durations=5

test-faults: setup strace  ## the fault-injection suite (tests/faults): kills, lost servers, full disks
	$(RUN) pytest -m faults --durations=10

browser:  ## Debian's Chromium for the web page test (installed when root; else that test skips)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium unavailable: the browser test will be skipped"

strace:  ## strace for the no-phone-home test (installed when root; else that test skips)
	@command -v strace >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; } \
		|| echo "strace unavailable: the no-phone-home test will be skipped"

serving-requirements: setup  ## re-export serving/requirements.txt (the bento's pins) from uv.lock
	$(UV) export --frozen --only-group serving --no-hashes --no-emit-project --quiet \
		--output-file serving/requirements.txt

lint: setup  ## ruff, then mypy strict on src/clearsight ([tool.mypy] in pyproject.toml)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy --cache-dir "$(MYPY_CACHE_DIR)"

docker/.env:  ## first use: settings from the example, a random database password and tokens (never printed)
	@$(PYTHON) -c "import os, pathlib, re, secrets; t = pathlib.Path('docker/.env.example').read_text().replace('CHANGE_ME', secrets.token_hex(16)); t = re.sub('GENERATE_ME', lambda _: secrets.token_urlsafe(32), t); fd = os.open('docker/.env', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600); os.write(fd, t.encode()); os.close(fd)"
	@echo "docker/.env written (mode 600): a database password and the feedback and admin tokens"

stack-lint: docker/.env  ## hadolint the Dockerfiles, validate the compose file
	$(RUN) hadolint docker/*.Dockerfile
	$(COMPOSE) config --quiet

stack-up: docker/.env  ## build the images and start the stack; returns when every service is healthy
	$(COMPOSE) up --build --detach --wait --wait-timeout 900

stack-demo: docker/.env  ## one retrain inside the stack, then a prediction with explanation
	bash docker/demo.sh

stack-faults: docker/.env  ## Postgres restarts mid-retrain: predictions keep coming, the flow ends clearly
	bash docker/faults.sh

stack-down:  ## stop the stack and remove its volumes
	$(COMPOSE) down --volumes --remove-orphans
