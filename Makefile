# edgeintel — every install step lives here: a fresh machine needs only Python 3.11 and pip.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCENARIO ?= scenarios/default.yaml
PYTEST_ARGS ?=

.PHONY: help install demo test test-fast test-heavy check lint format bench clean chromium redis-server \
	peers-venvs kserve-venv espeak-ng fashion-mnist

help:
	@echo "make demo   - set up .venv and run the default scenario"
	@echo "make test   - set up .venv and run the test suite (all but the heavy tests)"
	@echo "make test-heavy - the heavy tests: shipped scenarios trained in full (minutes each)"
	@echo "make test-fast - skip slow end-to-end tests"
	@echo "make check  - ruff + mypy"
	@echo "make bench  - run every benchmark (writes benchmarks/results/*.json)"
	@echo "make peers-venvs - the serving peers' own venvs in .venv-peers/ (make bench does it)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU wheel; installing it first keeps pip from pulling a CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0" "torchvision==0.28.0"
	$(BIN)/python -m pip install --quiet -e ".[datasets,federated,runtime,redis,cachesim,fast,sim,ray,openvino,executorch,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) espeak-ng fashion-mnist
	$(BIN)/edgeintel run $(SCENARIO)

# headless browser and its driver for the report layout and dashboard tests
# (tests/report/test_browser.py, tests/runtime); idempotent. The dashboard-over-TLS test
# imports the operator's PKCS#12 into a throwaway NSS database (pk12util) and needs
# Chromium to pick that certificate without a dialog: a managed policy that auto-selects,
# for loopback only, certificates issued by a CA named like edgeintel's scenario CAs
CHROMIUM_POLICY := /etc/chromium/policies/managed/edgeintel-tests.json
CHROMIUM_POLICY_JSON := {"AutoSelectCertificateForUrls": ["{\"pattern\": \"https://127.0.0.1\", \"filter\": {\"ISSUER\": {\"CN\": \"edgeintel scenario CA\"}}}"]}
chromium:
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
	  && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium and chromium-driver (headless browser for the tests)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; } \
	  || echo "warning: could not install chromium; the browser tests will be skipped"; }
	@command -v pk12util >/dev/null 2>&1 || { \
	  echo "installing Debian's libnss3-tools (the operator's certificate into a test browser)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libnss3-tools; } \
	  || echo "warning: could not install libnss3-tools; the dashboard-over-TLS test will be skipped"; }
	@test -f $(CHROMIUM_POLICY) || { \
	  echo "chromium policy: present certificates of an edgeintel scenario CA to https://127.0.0.1"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO mkdir -p $$(dirname $(CHROMIUM_POLICY)) && echo '$(CHROMIUM_POLICY_JSON)' \
	    | $$SUDO tee $(CHROMIUM_POLICY) >/dev/null \
	  || echo "warning: could not write $(CHROMIUM_POLICY); the dashboard-over-TLS test will be skipped"; }

# Redis for the shared result cache tests (tests/caching/test_redis_cache.py start their own
# redis-server on a free loopback port); idempotent
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing Debian's redis-server (shared result cache tests)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; } \
	  || echo "warning: could not install redis-server; the Redis cache tests will be skipped"; }

# espeak-ng synthesises the speech of the voice_commands dataset (scenarios/smart_home.yaml,
# tests/data/test_speech.py; edgeintel.data.speech); idempotent
espeak-ng:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  echo "installing Debian's espeak-ng (speech synthesis for the voice_commands dataset)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng; } \
	  || echo "warning: could not install espeak-ng; the voice_commands dataset will be unavailable"; }

# The serving peers (benchmarks/_peers_serve.py) each get a venv of their own: their pins
# (numpy<2, pandas<3, fastapi<0.116, ...) cannot live beside the project's. One lock file per
# peer (benchmarks/peer_servers/requirements-<peer>.txt); a venv is rebuilt when its lock
# changes, else left alone. Installs take ~40-80 s each and 0.4-0.5 GB.
PEERS_VENV := .venv-peers
PEERS      := triton kserve mlserver

$(PEERS_VENV)/%/.installed: benchmarks/peer_servers/requirements-%.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	rm -rf $(PEERS_VENV)/$*
	$(PYTHON) -m venv $(PEERS_VENV)/$*
	$(PEERS_VENV)/$*/bin/python -m pip install --quiet --no-compile -r $<
	touch $@

peers-venvs: $(foreach p,$(PEERS),$(PEERS_VENV)/$(p)/.installed)

# the KServe SDK's clients for tests/runtime/test_kserve_sdk.py (skipped without it)
kserve-venv:
	@$(MAKE) --no-print-directory $(PEERS_VENV)/kserve/.installed \
	  || echo "warning: could not build the kserve venv; tests/runtime/test_kserve_sdk.py will be skipped"

# Fashion-MNIST product photos for the smart_camera scenario (dataset 'fashion_mnist' reads
# /usr/share/datasets/fashion-mnist); idempotent
fashion-mnist:
	@test -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz || { \
	  echo "installing Debian's dataset-fashion-mnist (smart_camera scenario data)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; } \
	  || echo "warning: could not install dataset-fashion-mnist; its tests will be skipped"; }

test: $(STAMP) chromium redis-server kserve-venv espeak-ng fashion-mnist
	$(BIN)/python -m pytest -m "not heavy" $(PYTEST_ARGS)

test-heavy: $(STAMP) chromium redis-server kserve-venv espeak-ng fashion-mnist
	$(BIN)/python -m pytest -m heavy $(PYTEST_ARGS)

test-fast: $(STAMP) chromium redis-server kserve-venv espeak-ng fashion-mnist
	$(BIN)/python -m pytest -m "not slow and not heavy" $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP) peers-venvs
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) $(PEERS_VENV) runs .pytest_cache .mypy_cache .ruff_cache
