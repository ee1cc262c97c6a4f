#!/usr/bin/env bash
# Every open measurement queue, one after another, in issue order (each is resumable and skips what is done):
#   nohup benchmarks/queue.sh >> runs/queue.log 2>&1 &
# Snapshot before a machine goes: .venv/bin/python benchmarks/snapshot.py save, then commit evidence/.
set -uo pipefail
cd "$(dirname "$0")/.."
for queue in issue21 issue22 issue23 issue24; do
    echo "=== $(date -u +%FT%TZ) benchmarks/$queue.sh"
    benchmarks/$queue.sh || echo "=== benchmarks/$queue.sh stopped (exit $?): the next one starts"
done
