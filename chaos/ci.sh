#!/usr/bin/env bash
# The chaos harness's short CI runs: fixed seeds, the main nemeses, three and five nodes, and
# three nodes pushing through Redis Sentinel while its master fails over (about nine minutes). Installs what the runs need when it is missing. Needs root: the
# partition nemeses put each node in its own network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(libfaketime)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> building belfry and belfry-chaos"
cargo build --locked -p belfry -p belfry-chaos

out="${CHAOS_OUT:-chaos/out/ci}"
# Each run starts its nodes from empty data directories: an earlier run's would be a different
# cluster's state.
rm -rf "$out"
echo "==> chaos: 3 nodes, seed 101"
# With the test virtualenv's Python (set by scripts/test.sh), real Celery workers execute the
# tasks of four schedules through the Redis kills as well: two plain, and two slow ones under the
# overlap policies skip and buffer_one, whose outcomes the nodes follow in the result backend.
celery=()
[ -n "${BELFRY_TEST_PYTHON:-}" ] && celery=(--celery-python "$BELFRY_TEST_PYTHON")
target/debug/belfry-chaos --nodes 3 --duration 100s --seed 101 --out "$out/3n-seed101" "${celery[@]}" \
  --nemesis kill-leader,kill-follower,pause-leader,partition-leader,partition-split,partition-oneway,redis-kill,redis-slow,clock
echo "==> chaos: 5 nodes, seed 202"
target/debug/belfry-chaos --nodes 5 --duration 100s --seed 202 --out "$out/5n-seed202" \
  --nemesis kill-leader,kill-majority,pause-leader,partition-split,wipe,membership,rolling-restart,redis-kill
echo "==> chaos: 3 nodes through Redis Sentinel (master, replica, three sentinels), seed 303"
target/debug/belfry-chaos --nodes 3 --duration 100s --seed 303 --sentinel --out "$out/3n-sentinel-seed303" \
  --nemesis kill-leader,kill-follower,pause-leader,partition-leader,redis-failover
