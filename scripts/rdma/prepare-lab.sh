#!/usr/bin/env bash
# Host side of `make test-rdma`: build the lab image if it is missing, and install plugmq plus
# its test dependencies into dist/rdma-lab/site, a directory the guest puts on PYTHONPATH.
#
# Why not pip inside the guest: it has no network, and under TCG a venv with pip takes ~80 s
# to create and a pip install tens of seconds more. Every dependency is pure Python or a
# cp311 manylinux wheel, and the guest's Python is 3.11 like the host's, so the host installs
# them (from uv's cache, versions pinned by uv.lock) and the guest only sets PYTHONPATH.
# pyverbs comes from the guest's python3-pyverbs (/usr/lib/python3/dist-packages).
set -euo pipefail
cd "$(dirname "$0")/../.."

LAB=${RDMALAB_HOME:-$(cd .. && pwd)/shared/rdma-lab}
IMAGE_DIR=${RDMALAB_IMAGE_DIR:-${RDMALAB_DIR:-/tmp/rdmalab}/image}
OUT=dist/rdma-lab
SITE=$OUT/site

if [[ ! -f $IMAGE_DIR/rootfs.img ]]; then
    echo "prepare-lab: building the RDMA lab image (once, ~4 min; needs root and apt)"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo -E"
    WITH_SIW=${WITH_SIW:-0} $SUDO "$LAB/build-image.sh"
fi

rm -rf "$SITE" && mkdir -p "$SITE"
{
    uv export --frozen --no-hashes --package plugmq-transport-rdma --no-dev --no-emit-workspace
    uv export --frozen --no-hashes --all-packages --all-groups --no-emit-workspace \
        | grep -E '^(pytest|pytest-trio|pytest-timeout|iniconfig|packaging)=='
} | grep -v '^ *#' > "$OUT/requirements.txt"
uv pip install --quiet --python /usr/bin/python3 --target "$SITE" -r "$OUT/requirements.txt"
uv pip install --quiet --python /usr/bin/python3 --target "$SITE" --no-deps \
    ./core ./plugins/transport_tcp ./plugins/transport_rdma
echo "prepare-lab: $(ls "$SITE" | grep -c dist-info) distributions in $SITE"
