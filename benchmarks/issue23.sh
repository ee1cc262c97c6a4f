#!/usr/bin/env bash
# The measurements of issue 23: do journeys (wrong turns, reflections, the way back) teach more than shortcuts?
# Resumable; waits for runs/.evidence.lock (queued behind issues 21 and 22).
#   Trees: beam search (8 beams, the shipped PRM) on 150 training questions of gsm_symbolic (seed 11; evaluation
#   questions and a quarter of the templates left out, so the tables give seen and unseen templates apart). Shortcut
#   and journey sets from the same questions. Four LoRA SFT runs of the 0.5B: shortcut and journey at the same
#   number of steps (same examples), shortcut with as many training tokens as the journey run, and the journey with
#   reflections the policy wrote (its critique of the wrong turn) in place of the templates. Each judged
#   greedy on the 100 evaluation questions and the chain_sum ladder: accuracy, tokens per answer, and what the
#   answers' own revisions ("Wait, ...") did (`ponder journey revisions`).
# Step 6 writes evidence/journey-paired.txt (benchmarks/paired.py).
# Hours of 2 cores, estimated: ~2.5 (trees, ~60 s a question), ~0.7 (four trainings), ~0.7 (greedy evaluations).
set -euo pipefail
main() {
cd "$(dirname "$0")/.."
mkdir -p runs/train
exec 9> runs/.evidence.lock
flock 9
PY=.venv/bin/python
PONDER=.venv/bin/ponder
export PYTHONUNBUFFERED=1
step() { echo "== $(date -u +%FT%TZ) $*"; }
$PY benchmarks/snapshot.py restore

step "1. search trees on 150 training questions"
$PONDER journey trees --task gsm_symbolic --size 150 --seed 11 --n 8 --concurrent 4 --out runs/journey-trees.db
step "2. shortcut and journey sets (the deepest wrong branch, one a journey)"
$PONDER journey build runs/journey-trees.db --shortcut runs/train/journey-shortcut.jsonl \
    --journey runs/train/journey-journey.jsonl
# The same walks with reflections written by the policy (its critique of the wrong turn) instead of templates;
# the shortcuts come out the same
$PONDER journey build runs/journey-trees.db --shortcut runs/train/journey-shortcut.jsonl \
    --journey runs/train/journey-policy.jsonl --reflections policy
ROWS=$(wc -l < runs/train/journey-journey.jsonl)
STEPS=$(( (3 * ROWS + 7) / 8 ))  # three passes, 8 rows a step
# The shortcut run with as many trained tokens (the answers', where the loss is) as the journey run: the rows drawn
# in the same order, so more steps in the ratio of the two sets' answer tokens (a file's size would count the
# journeys' segments twice)
TOKEN_STEPS=$($PY - <<EOF
import json
from ponder.engine.backends import open_generator
encode = open_generator("qwen2.5-coder-0.5b-instruct").encode
def tokens(name):
    return sum(len(encode(json.loads(line)["messages"][-1]["content"])) for line in open(f"runs/train/{name}.jsonl"))
print(round($STEPS * tokens("journey-journey") / tokens("journey-shortcut")))
EOF
)
step "3. SFT: shortcut ($STEPS steps), journey ($STEPS steps), shortcut at the journey's tokens ($TOKEN_STEPS steps), journey with the policy's reflections ($STEPS steps)"
COMMON=(--lora-rank 16 --bf16 --batch-size 8 --save-every 5)
$PONDER train sft qwen2.5-coder-0.5b-instruct runs/train/journey-shortcut.jsonl --out runs/train/shortcut \
    --steps $STEPS "${COMMON[@]}"
$PONDER train sft qwen2.5-coder-0.5b-instruct runs/train/journey-journey.jsonl --out runs/train/journey \
    --steps $STEPS "${COMMON[@]}"
$PONDER train sft qwen2.5-coder-0.5b-instruct runs/train/journey-shortcut.jsonl --out runs/train/shortcut-tokens \
    --steps $TOKEN_STEPS "${COMMON[@]}"
$PONDER train sft qwen2.5-coder-0.5b-instruct runs/train/journey-policy.jsonl --out runs/train/journey-policy \
    --steps $STEPS "${COMMON[@]}"
step "4. greedy on the 100 evaluation questions and the chain_sum ladder: before and after each"
for model in qwen2.5-coder-0.5b-instruct runs/train/shortcut runs/train/journey runs/train/shortcut-tokens \
        runs/train/journey-policy; do
    name=$(basename $model)
    $PONDER eval --model $model --task gsm_symbolic --size 100 --strategies greedy --budgets 1 --max-tokens 1024 \
        --concurrent 8 --out runs/journey-gsm-$name.db
    $PONDER eval --model $model --task chain_sum_ladder --size 50 --strategies greedy --budgets 1 --max-tokens 1024 \
        --concurrent 8 --out runs/journey-ladder-$name.db
done
step "5. the tables and figures: accuracy against tokens per answer, and what the answers' revisions did"
GSM=() LADDER=()
for name in qwen2.5-coder-0.5b-instruct shortcut journey shortcut-tokens journey-policy; do
    GSM+=(runs/journey-gsm-$name.db) LADDER+=(runs/journey-ladder-$name.db)
done
$PONDER journey revisions "${GSM[@]}" --out runs/journey-gsm.md --figure docs/figures/journey/gsm.png
for which in seen unseen; do  # the trees' questions left a quarter of the templates out
    $PONDER journey revisions "${GSM[@]}" --templates $which --out runs/journey-gsm-$which.md \
        --figure docs/figures/journey/gsm-$which.png
done
$PONDER journey revisions "${LADDER[@]}" --out runs/journey-ladder.md --figure docs/figures/journey/ladder.png
step "6. paired over questions (95% bootstrap CI): journey - shortcut at the same steps and at the same tokens, each - before"
{
    pairs=("journey shortcut" "journey shortcut-tokens" "journey-policy journey" "journey-policy shortcut"
           "shortcut qwen2.5-coder-0.5b-instruct"
           "journey qwen2.5-coder-0.5b-instruct" "shortcut-tokens qwen2.5-coder-0.5b-instruct")
    for pair in "${pairs[@]}"; do
        set -- $pair
        for which in "" seen unseen; do
            $PY benchmarks/paired.py runs/journey-gsm-$1.db:greedy@1 runs/journey-gsm-$2.db:greedy@1 \
                ${which:+--templates $which}
        done
        $PY benchmarks/paired.py runs/journey-ladder-$1.db:greedy@1 runs/journey-ladder-$2.db:greedy@1
    done
} > evidence/journey-paired.txt
step "done"
}
main "$@"
