#!/usr/bin/env bash
# The measurements of issue 22: does learning from search lift the 0.5B model? Resumable like benchmarks/evidence.sh
# (every step skips what is done); it waits for runs/.evidence.lock, so it can be queued behind another script.
#   Training questions: 200 gsm_symbolic questions of another seed (none of them an evaluation question), sampled
#   8 times each; the right samples become rejection-sampled SFT rows, right-wrong pairs DPO rows. A quarter of the
#   templates is held out of training: reports give the evaluation questions of seen and unseen templates apart.
#   The 0.5B before, after SFT (LoRA), after SFT + DPO (LoRA): greedy and majority@4 and @8 on the 100 evaluation
#   questions, and on the chain_sum ladder (another task: does it carry over?). "Before" is issue 21's chain-of-thought
#   run (runs/gsm-cot.db: the same questions, seeds and settings; majority@16, the goal, and confidence) and the
#   ladder run of benchmarks/evidence.sh (runs/ladder.db), majority@8 read off their pools' first 8 samples
#   (benchmarks/pool_budgets.py), so this queue runs after benchmarks/issue21.sh.
# Hours of 2 cores, estimated from 60 sampled tokens/s and ~110 trained tokens/s (benchmarks/bench_train.py, LoRA
# bf16): ~1.9 (the training pool), ~0.5 (SFT), ~0.5 (DPO), ~0.8 and ~0.8 (after); the revision model ~0.5,
# revisions prompted and trained ~1 each (per difficulty bin in the report: by the pooled samples' pass rate).
set -euo pipefail
main() {
cd "$(dirname "$0")/.."
mkdir -p runs/train
exec 9> runs/.evidence.lock
flock 9  # waits for the run ahead
PY=.venv/bin/python
PONDER=.venv/bin/ponder
export PYTHONUNBUFFERED=1
step() { echo "== $(date -u +%FT%TZ) $*"; }
$PY benchmarks/snapshot.py restore
# Four questions at once, batched by one engine: the same answers as one by one (tested), in about half the time;
# seconds per question are then shared wall time (the before runs' were not).
EVAL=(--task gsm_symbolic --size 100 --strategies greedy,majority --budgets 4,8 --concurrent 4)
LADDER=(--task chain_sum_ladder --size 50 --strategies greedy,majority --budgets 8 --concurrent 4)
BEFORE=runs/gsm-cot.db

step "1. before: the 0.5B, greedy and majority@4, @16 (issue 21's run), @8 read off its pool; the same on the ladder"
for run in $BEFORE runs/ladder.db; do
    test -s $run || { echo "$run is missing: run benchmarks/issue21.sh and benchmarks/evidence.sh first"; exit 1; }
done
$PY benchmarks/pool_budgets.py $BEFORE --budgets 8 --out runs/gsm-cot-at-8.db
$PY benchmarks/pool_budgets.py runs/ladder.db --budgets 8 --out runs/ladder-at-8.db
step "2. the training pool: 200 questions of seed 7, 8 samples each"
$PONDER eval --task gsm_symbolic --task-seed 7 --size 200 --strategies majority --budgets 8 --out runs/gsm-train-pool.db
step "3. training sets, a quarter of the templates held out"
$PONDER train data runs/gsm-train-pool.db --sft runs/train/gsm-sft.jsonl --pairs runs/train/gsm-pairs.jsonl \
    --per-question 4 --hold-out-templates 0.25
step "4. SFT (LoRA 16, bf16 autocast, two passes)"
ROWS=$(wc -l < runs/train/gsm-sft.jsonl)
$PONDER train sft qwen2.5-coder-0.5b-instruct runs/train/gsm-sft.jsonl --out runs/train/gsm-sft --lora-rank 16 \
    --bf16 --steps $(( 2 * ROWS / 16 )) --save-every 5
step "5. after SFT: greedy and majority@4"
$PONDER eval --model runs/train/gsm-sft "${EVAL[@]}" --out runs/gsm-after-sft.db
$PONDER eval --model runs/train/gsm-sft "${LADDER[@]}" --out runs/ladder-after-sft.db
step "6. DPO on the SFT model (LoRA 16, bf16 autocast, one pass)"
# One pair a forward pass (two sequences; 7.7 GiB peak): the memory check refused two until session 23 corrected its
# estimate (two take 12.1 GiB). The same steps either way (a step's loss is normalised over the whole step); kept at
# one, as this run was trained.
$PONDER train dpo runs/train/gsm-sft runs/train/gsm-pairs.jsonl --out runs/train/gsm-dpo --lora-rank 16 --bf16 \
    --micro-batch 1 --save-every 5
step "7. after SFT + DPO: greedy and majority@4"
$PONDER eval --model runs/train/gsm-dpo "${EVAL[@]}" --out runs/gsm-after-dpo.db
$PONDER eval --model runs/train/gsm-dpo "${LADDER[@]}" --out runs/ladder-after-dpo.db
step "8. reports: seen and unseen templates"
for which in seen unseen; do
    $PONDER report $BEFORE --compare runs/gsm-cot-at-8.db --compare runs/gsm-after-sft.db \
        --compare runs/gsm-after-dpo.db --templates $which --out runs/gsm-trained-$which.html \
        --figures docs/figures/trained-$which
done
$PONDER report runs/ladder.db --compare runs/ladder-at-8.db --compare runs/ladder-after-sft.db \
    --compare runs/ladder-after-dpo.db --out runs/ladder-trained.html --figures docs/figures/trained-ladder
step "9. a revision model: SFT on revision chains (0-4 wrong attempts, then a right answer) from the same pool"
$PONDER train data runs/gsm-train-pool.db --revisions runs/train/gsm-revisions.jsonl --per-question 4 \
    --hold-out-templates 0.25
ROWS=$(wc -l < runs/train/gsm-revisions.jsonl)
# Chains of up to four wrong attempts run to ~2,000 tokens: at the default 1,024 a quarter of the rows (the longest
# chains) would be skipped. One row a forward pass keeps such a step within memory.
$PONDER train sft qwen2.5-coder-0.5b-instruct runs/train/gsm-revisions.jsonl --out runs/train/gsm-reviser \
    --lora-rank 16 --bf16 --steps $(( 2 * ROWS / 16 )) --save-every 5 --max-length 2048 --micro-batch 1
step "10. revisions at 8 attempts (two chains of 4): prompted (the base model) and by the revision model"
# One mix only (chains of 4, the context the revision model was trained on): each setting costs ~1.5 hours of 2 cores.
REVISE=(--task gsm_symbolic --size 100 --strategies revisions --budgets 8 --concurrent 4)
$PONDER eval "${REVISE[@]}" --out runs/gsm-revise-prompted.db
$PONDER eval --model runs/train/gsm-reviser "${REVISE[@]}" --out runs/gsm-revise-trained.db
# Difficulty bins from the base model's own pool (step 1), the same for both.
$PONDER report $BEFORE --compare runs/gsm-revise-prompted.db --compare runs/gsm-revise-trained.db \
    --out runs/gsm-revise.html --figures docs/figures/revisions
step "done"
}
main "$@"
