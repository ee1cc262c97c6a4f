#!/usr/bin/env bash
# The measurements of issue 21, in the order the README needs them. Resumable like benchmarks/evidence.sh: run it
# again and it continues; `benchmarks/snapshot.py save` and commit evidence/ before a machine goes.
#   HumanEval, all 164 problems: the 0.5B and 1.5B models greedy; the 0.5B thinking harder with execution
#   (majority over programs grouped by what they print on the prompt's examples; best-of-n by the code verifier,
#   which runs the prompt's examples only, never the hidden tests) at budgets 2, 4, 8, 16.
#   gsm_symbolic, the 100 evaluation questions: answers as programs run in the sandbox (greedy, majority), chains of
#   thought drawn again with the confidence strategy beside majority, and both formats in turn (mixed).
# Greedy HumanEval runs on llama.cpp (one sequence: the faster backend there), pools on the native engine.
# Hours of 2 cores: ~0.4 and ~0.5 (greedy), ~0.8 (gsm programs), ~3.5 (the HumanEval pool, ~80 s a problem),
# ~2.2 and ~1.5 (gsm chains of thought: the confidence runs draw their own traces, ~37 samples a question, ~1.3 min;
# mixed).
set -euo pipefail
main() {
cd "$(dirname "$0")/.."
mkdir -p runs
exec 9> runs/.evidence.lock
flock 9  # waits for a run ahead of it
PY=.venv/bin/python
PONDER=.venv/bin/ponder
export PYTHONUNBUFFERED=1
step() { echo "== $(date -u +%FT%TZ) $*"; }
$PY benchmarks/snapshot.py restore

step "1. HumanEval: 0.5B greedy"
$PONDER eval --task humaneval --size 164 --strategies greedy --budgets 1 --max-tokens 1024 --backend llamacpp \
    --out runs/humaneval-0.5b-greedy.db
step "2. HumanEval: 1.5B greedy"
$PONDER eval --model qwen2.5-coder-1.5b-instruct --task humaneval --size 164 --strategies greedy --budgets 1 \
    --max-tokens 1024 --backend llamacpp --out runs/humaneval-1.5b-greedy.db
step "3. gsm_symbolic as programs: greedy, and majority of 4, 8, 16 programs"
$PONDER eval --task gsm_symbolic --size 100 --format program --strategies greedy,majority --budgets 4,8,16 \
    --out runs/gsm-program.db
step "4. HumanEval: 0.5B, 16 samples a problem at temperature 0.7, majority and best-of-n at 2, 4, 8, 16"
$PONDER eval --task humaneval --size 164 --strategies majority,bon --budgets 2,4,8,16 --verifier code \
    --temperature 0.7 --max-tokens 1024 --out runs/humaneval-0.5b.db
step "5. HumanEval: auto replayed from the pool, each problem by the policy calibrated on the other half"
for fold in 0 1; do
    $PONDER allocate runs/humaneval-0.5b.db --folds 2 --hold-out $fold --out runs/humaneval-policy-$fold.json
done
$PONDER report runs/humaneval-0.5b.db --policy runs/humaneval-policy-0.json --policy runs/humaneval-policy-1.json \
    --compare runs/humaneval-0.5b-greedy.db --compare runs/humaneval-1.5b-greedy.db --figures docs/figures/humaneval
step "6. gsm_symbolic, chains of thought drawn again (seeds now differ per question): majority and confidence"
$PONDER eval --task gsm_symbolic --size 100 --strategies greedy,majority,confidence --budgets 4,16 \
    --out runs/gsm-cot.db
$PY benchmarks/bench_confidence.py runs/gsm-cot.db | tee runs/gsm-confidence.txt
step "7. gsm_symbolic, chains of thought and programs in turn"
$PONDER eval --task gsm_symbolic --size 100 --format mixed --strategies majority --budgets 4,16 \
    --out runs/gsm-mixed.db
step "8. gsm_symbolic: every format and strategy beside the 1.5B, one table and one figure"
$PONDER report runs/gsm-program.db --compare runs/gsm-cot.db --compare runs/gsm-mixed.db --compare runs/gsm-1.5b.db \
    --figures docs/figures/gsm --out runs/gsm.html
step "done"
}
main "$@"
