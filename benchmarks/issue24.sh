#!/usr/bin/env bash
# The measurements of issue 24: NVLM-D, -X and -H on SmolLM2-135M, head to head. Resumable (every step skips what
# is done); waits for runs/.evidence.lock, so it can be queued behind another script.
#   1. The shared encoder, from scratch on drawn tiles (dense digit and shape labels).
#   2. D, X and H with tile tags and the thumbnail, each in NVLM's two stages (150 steps connector only, 150 steps
#      with LoRA 8 on the decoder; 8 images a step, half reading and half counting, from training seeds), and
#      bench_nvlm.py on 100 held-out images of each kind and 100 text questions.
#   3. Each without tags, D without the thumbnail (H without it is X); the whole table (the README's).
#   4. The three main designs are copied into the package as nvlm-d/x/h-smollm2.
# Hours of 2 cores, estimated from the first tries (bf16 on an AVX-512 machine; half that speed when shared):
# ~0.5 (encoder, done in session 14), ~1.3 each D, ~0.5 each X and H (~6 in all), ~0.8 (the tables).
# A first D at 40 + 40 steps (480 images; evidence/vision-d-probe-metrics.jsonl) had not learned to read: its loss
# stayed at chance (1.5), hence 150 + 150.
set -euo pipefail
main() {
cd "$(dirname "$0")/.."
mkdir -p runs/vision
exec 9> runs/.evidence.lock
flock 9
PY=.venv/bin/python
PONDER=.venv/bin/ponder
export PYTHONUNBUFFERED=1
step() { echo "== $(date -u +%FT%TZ) $*"; }
$PY benchmarks/snapshot.py restore
V=runs/vision

step "1. the shared encoder"
$PONDER train encoder --out $V/encoder --steps 800
step "2. D, X and H with tags and the thumbnail, and their table (held-out images, seed 1, 100 of each kind)"
train() {  # train VARIANT: the design is its first letter; -notags, -nothumb turn those off
    local variant=$1 design=${1%%-*} flags=()
    if [[ $variant == *-notags ]]; then flags+=(--no-tags); fi
    if [[ $variant == *-nothumb ]]; then flags+=(--no-thumbnail); fi
    $PONDER train vision --design "$design" "${flags[@]}" --encoder $V/encoder --out $V/$variant \
        --stage1-steps 150 --stage2-steps 150  # a finished folder says so and is left alone
}
for variant in d x h; do train $variant; done
$PY benchmarks/bench_nvlm.py $V/d $V/x $V/h --size 100 --out $V/table-dxh.md
step "3. without tags, and D without the thumbnail; the whole table (answers already given are kept)"
for variant in d-notags x-notags h-notags d-nothumb; do train $variant; done
$PY benchmarks/bench_nvlm.py $V/d $V/d-notags $V/d-nothumb $V/x $V/x-notags $V/h $V/h-notags --size 100 \
    --out $V/table.md
step "4. the three designs ship in the package, each only if its answers depend on the image"
sees() {  # every reading question is worded the same: a model that answers them all alike does not see the image
    $PY -c "import json, sys; rows = [json.loads(line) for line in open(sys.argv[1])]
sys.exit(len({r['answer'] for r in rows if r['kind'] == 'reading'}) < 2)" "$1/bench-1.jsonl"
}
for design in d x h; do
    if [[ -f $V/$design/vision.safetensors ]] && sees $V/$design; then
        mkdir -p src/ponder/vision/trained/nvlm-$design-smollm2
        cp $V/$design/vision.json $V/$design/vision.safetensors src/ponder/vision/trained/nvlm-$design-smollm2/
    else
        echo "nvlm-$design-smollm2 is not shipped: it answers the same whatever the image (see $V/table.md)"
    fi
done
step "done"
}
main "$@"
