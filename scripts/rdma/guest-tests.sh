#!/usr/bin/env bash
# Runs inside the RDMA lab guest (run-in-vm.sh -f): the RDMA test suite on Soft-RoCE.
set -euo pipefail
cd /src
export PYTHONPATH=/src/dist/rdma-lab/site
export PLUGMQ_RDMA=1
echo "guest: $(python3 --version), device ${RDMALAB_DEV:-?} on ${RDMALAB_IP:-?}, $(nproc) cpus"
ulimit -l unlimited 2>/dev/null || true
start=$(date +%s)
status=0
python3 -m pytest tests/transport_rdma -p no:cacheprovider -v -rs ${PYTEST_K:+-k "$PYTEST_K"} ${PYTEST_ARGS:-} || status=$?
echo "guest: pytest finished in $(( $(date +%s) - start )) s with status $status"
exit $status
