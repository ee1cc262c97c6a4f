#!/usr/bin/env bash
# HumanEval, all 164 problems (issue 21): the 0.5B and 1.5B models greedy, and the 0.5B thinking harder with
# execution (majority over programs grouped by what they print on the prompt's examples; best-of-n by the code
# verifier, which runs the prompt's examples only, never the hidden tests), at budgets 2, 4, 8, 16.
# Resumable like benchmarks/evidence.sh (run it again and it continues; snapshot.py save before a machine goes).
# Greedy runs on llama.cpp (one sequence: it is the faster backend there), the pool on the native engine (16
# sequences at once). About 4 hours of 2 cores: ~10 min, ~25 min, then ~80 s a problem for the pool.
set -euo pipefail
main() {
cd "$(dirname "$0")/.."
mkdir -p runs
exec 9> runs/.evidence.lock
flock -n 9 || { echo "another evidence run holds runs/.evidence.lock"; exit 1; }
PY=.venv/bin/python
PONDER=.venv/bin/ponder
export PYTHONUNBUFFERED=1
step() { echo "== $(date -u +%FT%TZ) $*"; }
$PY benchmarks/snapshot.py restore

step "1. 0.5B greedy, 164 problems"
$PONDER eval --task humaneval --size 164 --strategies greedy --budgets 1 --max-tokens 1024 --backend llamacpp \
    --out runs/humaneval-0.5b-greedy.db
step "2. 1.5B greedy, 164 problems"
$PONDER eval --model qwen2.5-coder-1.5b-instruct --task humaneval --size 164 --strategies greedy --budgets 1 \
    --max-tokens 1024 --backend llamacpp --out runs/humaneval-1.5b-greedy.db
step "3. 0.5B, 16 samples a problem at temperature 0.7: majority and best-of-n at 2, 4, 8, 16"
$PONDER eval --task humaneval --size 164 --strategies majority,bon --budgets 2,4,8,16 --verifier code \
    --temperature 0.7 --max-tokens 1024 --out runs/humaneval-0.5b.db
step "done"
}
main "$@"
