# The two set-up commands of the README: `make run` and `make test`.
# Each installs what it needs first (scripts/bootstrap.sh).
DATA_DIR ?= ./plugmq-data
PYTEST_ARGS ?=

.PHONY: run test lint bootstrap

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	uv run plugmq broker --data-dir $(DATA_DIR)

test:
	@PLUGMQ_TEST_DEPS=1 scripts/bootstrap.sh
	uv run ruff check .
	uv run pytest $(PYTEST_ARGS)

lint: bootstrap
	uv run ruff check .
	uv run ruff format --check .

# RDMA transport on Soft-RoCE in the rdma-lab VM (builds the image once, ~4 min, as root).
# shared/ lies beside the checkout (on developer machines and in CI alike).
RDMALAB_HOME ?= $(abspath $(CURDIR)/../shared/rdma-lab)
RDMA_VM_TIMEOUT ?= 900

.PHONY: test-rdma
test-rdma:
	@scripts/rdma/prepare-lab.sh
	time $(RDMALAB_HOME)/run-in-vm.sh -q -t $(RDMA_VM_TIMEOUT) -s $(CURDIR) -e PYTEST_ARGS="$(PYTEST_ARGS)" -f scripts/rdma/guest-tests.sh
