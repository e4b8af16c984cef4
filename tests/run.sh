#!/usr/bin/env bash
# `make test`: the whole suite. Builds the local control plane if it is not
# cached, starts it unless it is already up, runs every test (unit, the
# control-plane checks, the API integration tests, schemathesis against the
# API's OpenAPI document), and stops the cluster it
# started even when tests fail. A throwaway redis-server serves the store's
# Redis tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# What the suite starts must end with it: `git-daemon`s and gitfaas
# processes running before it are not its own.
running() { { pgrep -x git-daemon; pgrep -x gitfaas; } | sort || true; }
before=$(running)

# The tier that needs nothing running first (`make test-unit`): a break
# there shows in a minute, before the cluster starts.
scripts/ensure-deps.sh runc busybox-static npm chromium
make -s test-unit
tests/cluster/build.sh >/dev/null
[ "${GITFAAS_REAL_NODE:-1}" = 0 ] || tests/cluster/node-build.sh >/dev/null

here=$root/tests/cluster
# shellcheck source=cluster/common.sh
. "$here/common.sh"
owned=1
if recorded_all_alive 2>/dev/null; then
  owned=0
  echo "test: reusing the running cluster in $CLUSTER_DIR (left up afterwards)" >&2
fi
cleanup() {
  tests/redis.sh down || true
  if [ "$owned" = 1 ]; then tests/cluster/down.sh || true; fi
}
trap cleanup EXIT
eval "$(tests/cluster/up.sh)"
eval "$(tests/redis.sh up)"

# The suite's own threads contend with the control plane, the real node's
# containers and their own gitfaas for 2 cores; tests poll with deadlines,
# so a lower thread count only makes them calmer. Beside each other the
# load tests (a thousand publishes, two hundred waits) and the real-node
# ones starved each other: at 4 and at 2 threads a different one of them
# failed in 4 CI runs of 5. One at a time.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-1}
cargo test --locked --all-targets "$@"

# Deployment (chart lint, drift of deploy/kubernetes/, server-side dry runs,
# least-privilege proof) and the example pipeline, with the debug binary
# cargo test just built.
bin=${CARGO_TARGET_DIR:-$root/target}/debug/gitfaas
GITFAAS_BIN=$bin tests/helm/check.sh
GITFAAS_BIN=$bin examples/pipeline/check.sh
# The HTTP API against its own OpenAPI document (GET /openapi.json):
# schemathesis' generated requests, no 5xx, every answer as documented.
GITFAAS_BIN=$bin tests/schemathesis/check.sh

# The README's demo, non-interactively, on a free port against this
# cluster, with the same debug binary (`make demo` builds the release one).
demo_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DEMO_ONCE=1 GITFAAS_DEMO_PORT=$demo_port GITFAAS_BIN=$bin examples/demo.sh

# Nothing the suite started is left running (a `git daemon` left behind
# served the temporary directory on 127.0.0.1 long after a run).
sleep 1
left=$(comm -13 <(echo "$before") <(running))
if [ -n "$left" ]; then
  echo "test: the suite left these processes running:" >&2
  for pid in $left; do ps -o pid=,args= -p "$pid" >&2 || true; done
  exit 1
fi
