#!/usr/bin/env bash
# Installs everything plugmq needs on a fresh Debian machine: the system packages
# (Berkeley DB headers for the store plugin), uv, and the workspace's Python packages.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(libdb5.3-dev)
if [[ "${PLUGMQ_TEST_DEPS:-0}" == 1 ]]; then
    # The client is tested against RabbitMQ too (the dialect's reference implementation).
    SYSTEM_PACKAGES+=(rabbitmq-server)
    # ZooKeeper for the ha_zk tests (started by the tests with java, never as a service).
    SYSTEM_PACKAGES+=(zookeeper)
    # Debian's pyverbs (the PyPI one needs a newer rdma-core): the host-side RDMA probe test.
    SYSTEM_PACKAGES+=(python3-pyverbs)
    # store_pg's tests run their own PostgreSQL (initdb + pg_ctl); only when none is installed.
    if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
        SYSTEM_PACKAGES+=(postgresql)
    fi
fi

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "bootstrap: installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
    echo "bootstrap: installing uv"
    python3 -m pip install --quiet uv
fi

uv sync --quiet --frozen 2>/dev/null || uv sync --quiet
