#!/usr/bin/env bash
# Issue 24's training and table (benchmarks/issue24.sh, steps 2-3) on a GPU machine in minutes instead of ~6 CPU-hours:
# the same commands with the same settings and folders, the seven variants trained side by side (one process each),
# then benchmarked side by side, then the tables. The folders it leaves are the CPU queue's: issue24.sh then finds
# them done and only copies the three designs into the package. Needs a pulled smollm2-135m-instruct (PONDER_HOME)
# and the shared encoder in runs/vision/encoder (benchmarks/snapshot.py restore puts it there).
#   PONDER=ponder PY=python benchmarks/issue24_gpu.sh          # STEPS=2 for a dry run of the whole path
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PONDER=${PONDER:-.venv/bin/ponder}
STEPS=${STEPS:-150}  # per stage, as issue24.sh
SIZE=${SIZE:-100}  # held-out questions of each kind
V=${V:-runs/vision}
export PYTHONUNBUFFERED=1
step() { echo "== $(date -u +%FT%TZ) $*"; }
test -s $V/encoder/encoder.safetensors || { echo "$V/encoder holds no encoder: run benchmarks/snapshot.py restore"; exit 1; }

step "the base decoder, dequantized once before seven processes ask for it"
$PY -c "from ponder.models.loader import load; load('smollm2-135m-instruct')" || exit 1
VARIANTS=(d x h d-notags x-notags h-notags d-nothumb)
step "training ${VARIANTS[*]} side by side ($STEPS + $STEPS steps each)"
for variant in "${VARIANTS[@]}"; do
    design=${variant%%-*} flags=()
    if [[ $variant == *-notags ]]; then flags+=(--no-tags); fi
    if [[ $variant == *-nothumb ]]; then flags+=(--no-thumbnail); fi
    $PONDER train vision --design "$design" "${flags[@]}" --encoder $V/encoder --out $V/$variant \
        --stage1-steps "$STEPS" --stage2-steps "$STEPS" > $V/$variant.train.log 2>&1 &
done
wait
for variant in "${VARIANTS[@]}"; do echo "$variant: $(tail -n 1 $V/$variant.train.log)"; done
step "each benchmarked on $SIZE held-out questions of each kind, side by side"
for variant in "${VARIANTS[@]}"; do
    $PY benchmarks/bench_nvlm.py $V/$variant --size "$SIZE" > $V/$variant.bench.log 2>&1 &
done
wait
step "the tables (answers already given are kept)"
$PY benchmarks/bench_nvlm.py $V/d $V/x $V/h --size "$SIZE" --out $V/table-dxh.md
$PY benchmarks/bench_nvlm.py $V/d $V/d-notags $V/d-nothumb $V/x $V/x-notags $V/h $V/h-notags --size "$SIZE" \
    --out $V/table.md
step "done"
