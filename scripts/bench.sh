#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make bench`: builds gitfaas and the bench (release), builds the local
# control plane if it is not cached, starts it unless one is already up (which
# it then leaves running), runs benches/gitfaas/, and stops the cluster it
# started even when the bench fails.
#
# Stdout: one markdown table. Also written, with the machine and the command,
# to target/bench/BENCHMARKS.md (copy it over BENCHMARKS.md to publish it).
# Fails (exit 3) when any row misses its target, after writing the table.
# Settings (environment): BENCH_CASES, BENCH_GITFAAS, BENCH_N, BENCH_SECONDS,
# BENCH_CONCURRENCY, BENCH_TOPICS, BENCH_FILES_PER_TOPIC, BENCH_PUSHES (see
# benches/gitfaas/main.rs) and the cluster's GITFAAS_* variables
# (tests/cluster/README.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/ensure-deps.sh redis-server
tests/cluster/build.sh >/dev/null
# Build first, before the cluster takes CPU from the compiler.
cargo bench --locked --bench gitfaas --no-run

here=$root/tests/cluster
# shellcheck source=../tests/cluster/common.sh
. "$here/common.sh"
owned=1
if recorded_all_alive 2>/dev/null; then
  owned=0
  echo "bench: reusing the running cluster in $CLUSTER_DIR (left up afterwards)" >&2
fi
# Case 6's Redis backend: a throwaway redis-server of its own port.
export GITFAAS_TEST_REDIS_PORT=${GITFAAS_BENCH_REDIS_PORT:-16399}
cleanup() {
  tests/redis.sh down || true
  if [ "$owned" = 1 ]; then tests/cluster/down.sh || true; fi
}
trap cleanup EXIT
eval "$(tests/cluster/up.sh)"
export GITFAAS_CLUSTER_DIR=$CLUSTER_DIR
eval "$(tests/redis.sh up)"
export GITFAAS_BENCH_REDIS_URL=$GITFAAS_TEST_REDIS_URL

out=$root/target/bench
mkdir -p "$out"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# The bench exits 3 when a row missed its target: the table is still
# written, then `make bench` fails with the list of what was missed.
status=0
cargo bench --locked --bench gitfaas | tee "$out/table.md" || status=${PIPESTATUS[0]}

mem_gib=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
{
  echo "# Benchmarks"
  echo
  echo "Latest \`make bench\` (benches/gitfaas/ against the local control plane; design.md §11)."
  echo
  echo "- machine: $(nproc) cores (nproc), ${mem_gib} GiB memory, ${cpu:-unknown CPU}; load average $load_before before the run, $(cut -d' ' -f1-3 /proc/loadavg) after"
  echo "- command: \`make bench\`${BENCH_CASES:+ with BENCH_CASES=$BENCH_CASES}${BENCH_GITFAAS:+, serving with BENCH_GITFAAS=$BENCH_GITFAAS}"
  echo "- date: $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src benches Cargo.toml 2>/dev/null || echo ' (with local changes)')"
  echo
  cat "$out/table.md"
} >"$out/BENCHMARKS.md"
echo "bench: table with machine details in $out/BENCHMARKS.md" >&2
if [ "$status" -ne 0 ]; then
  echo "bench: FAILED (exit $status): see the missed targets above" >&2
  exit "$status"
fi
