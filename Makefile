# custody: `make run` starts a local daemon on a fresh machine, `make test` runs the whole test suite.
# Both set up what they need first: system packages (SoftHSM2) via scripts/ensure-system-deps.sh, the project
# in .venv, and for `make test` Node.js with the Ethereum tools the end-to-end tests drive (tests/tools).

VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
CUSTODY     := $(VENV)/bin/custody
DEV_DIR     ?= dev-env
# The daemon's gRPC port for a new `make run` environment (on 127.0.0.1); PORT+1 is kept for JSON-RPC, PORT+2
# for metrics. An existing environment keeps the port it was made with; giving another PORT says so and stops.
PORT        ?= 50051
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: one per core. Each test file runs on one worker (--dist loadfile), so a
# file's module-scoped daemon or environment is built once.
TEST_WORKERS ?= auto

.PHONY: run test coverage lint proto bench system-deps node-deps venv tools clean-dev

system-deps:
	@bash scripts/ensure-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	@echo "Installing custody and its development tools into $(VENV) ..."
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: system-deps $(VENV)/.installed

# anvil, cast, ethers, viem and Safe's compiled contracts, at the versions tests/tools/package-lock.json pins
# (anvil and cast as the platform binaries their npm packages ship; their install scripts, which would fetch
# a binary from elsewhere when that package is missing, are not run). Reinstalled when the lock changes.
TOOLS_DIR := tests/tools
$(TOOLS_DIR)/node_modules/.installed: $(TOOLS_DIR)/package.json $(TOOLS_DIR)/package-lock.json $(TOOLS_DIR)/.npmrc
	@echo "Installing the Ethereum tools the tests drive into $(TOOLS_DIR)/node_modules ..."
	@cd $(TOOLS_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

tools: node-deps $(TOOLS_DIR)/node_modules/.installed

node-deps:
	@bash scripts/ensure-system-deps.sh --with-node

run: venv
	@if [ ! -f $(DEV_DIR)/server.toml ]; then $(CUSTODY) dev init $(DEV_DIR) --listen 127.0.0.1:$(PORT) --daemon-starts-next; \
	elif [ "$(origin PORT)" != file ] && ! grep -q '^listen = "127.0.0.1:$(PORT)"' $(DEV_DIR)/server.toml; then \
	  echo "$(DEV_DIR) was made for another port ($$(grep -m1 '^listen' $(DEV_DIR)/server.toml)); its profiles"; \
	  echo "connect there. To use port $(PORT), remove $(DEV_DIR) (make clean-dev) and run make run PORT=$(PORT) again."; \
	  exit 2; fi
	@echo
	@echo "Starting custody on $(DEV_DIR)/server.toml (Ctrl-C stops it). In a second terminal:"
	@echo "    . $(VENV)/bin/activate"
	@echo "    export CUSTODY_PROFILE=$(DEV_DIR)/profiles/admin.toml"
	@echo "    custody keys create --label ops"
	@echo "    custody --profile $(DEV_DIR)/profiles/backend.toml sign tx --key ops --file $(DEV_DIR)/examples/eip1559-tx.json"
	@echo
	@exec $(CUSTODY) serve --config $(DEV_DIR)/server.toml

test: venv tools
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The suite under coverage.py (settings in pyproject.toml), then the report; exits with the suite's status.
coverage: venv tools
	@rm -f .coverage .coverage.*
	$(VENV)/bin/coverage run -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); status=$$?; \
	$(VENV)/bin/coverage combine --quiet && $(VENV)/bin/coverage report; exit $$status

lint: venv
	$(VENV)/bin/ruff check custody tests bench
	$(VENV)/bin/ruff format --check custody tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo
	PYTHON=$(PYTHON) bash scripts/check-proto.sh

proto: venv
	PYTHON=$(PYTHON) bash scripts/gen-proto.sh

bench: venv
	$(PYTHON) bench/signing_rate.py
	$(PYTHON) bench/approval_latency.py
	$(PYTHON) bench/audit_verify.py
	$(PYTHON) bench/hsm_lanes.py
	$(PYTHON) bench/jsonrpc_signing.py
	$(PYTHON) bench/seal_check.py
	$(PYTHON) bench/write_lock.py

clean-dev:
	rm -rf $(DEV_DIR)
