#!/usr/bin/env bash
# The measurements of issue 24: NVLM-D, -X and -H on SmolLM2-135M, head to head. Resumable (every step skips what
# is done); waits for runs/.evidence.lock, so it can be queued behind another script.
#   1. The shared encoder, from scratch on drawn tiles (dense digit and shape labels).
#   2. Seven designs, each in NVLM's two stages (60 steps connector only, 60 steps with LoRA 8 on the decoder;
#      8 images a step, half reading and half counting, from training seeds): D, X and H with tile tags and the
#      thumbnail; each without tags; D without the thumbnail (H without it is X).
#   3. bench_nvlm.py on 100 held-out images of each kind and 100 text questions: the README's table.
#   4. The three main designs are copied into the package as nvlm-d/x/h-smollm2.
# Hours of 2 cores, estimated: ~0.5 (encoder), ~0.4 each D, ~0.2 each X and H (~2 in all), ~0.8 (the table).
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
step "2. seven designs"
for variant in d x h d-notags x-notags h-notags d-nothumb; do
    design=${variant%%-*}
    flags=()
    if [[ $variant == *-notags ]]; then flags+=(--no-tags); fi
    if [[ $variant == *-nothumb ]]; then flags+=(--no-thumbnail); fi
    $PONDER train vision --design "$design" "${flags[@]}" --encoder $V/encoder --out $V/$variant  # done: says so
done
step "3. the table: held-out images (seed 1), 100 of each kind"
$PY benchmarks/bench_nvlm.py $V/d $V/d-notags $V/d-nothumb $V/x $V/x-notags $V/h $V/h-notags --size 100 \
    --out $V/table.md
step "4. the three designs ship in the package"
for design in d x h; do
    mkdir -p src/ponder/vision/trained/nvlm-$design-smollm2
    if [[ -f $V/$design/vision.safetensors ]]; then
        cp $V/$design/vision.json $V/$design/vision.safetensors src/ponder/vision/trained/nvlm-$design-smollm2/
    fi
done
step "done"
}
main "$@"
