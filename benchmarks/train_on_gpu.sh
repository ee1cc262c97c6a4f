#!/usr/bin/env bash
# Issue 22, item 5 on a GPU: `ponder train sft` and `dpo` on SmolLM2 (CUDA, bf16 by default there); the folder loads in transformers.
set -u
PONDER=${PONDER:-ponder}  # where ponder is not installed: a script running python3 -c "from ponder.cli import run; run()"
python3 - <<'PY'
import json
rows = [{"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                      {"role": "assistant", "content": f"{a} + {b} = {a + b}. The answer is {a + b}."}]}
        for a in range(2, 10) for b in range(1, 5)]
open("/tmp/sft.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in rows))
pairs = [{"prompt": r["messages"][:1], "chosen": r["messages"][1:],
          "rejected": [{"role": "assistant", "content": r["messages"][1]["content"].replace("answer is", "answer is 1")}]}
         for r in rows]
open("/tmp/dpo.jsonl", "w").write("".join(json.dumps(p) + "\n" for p in pairs))
PY
$PONDER train sft smollm2-135m-instruct /tmp/sft.jsonl --out /root/sft --steps 8 --batch-size 4 --lora-rank 8 --lr 2e-3
$PONDER train dpo /root/sft /tmp/dpo.jsonl --out /root/dpo --steps 4 --batch-size 4 --lora-rank 8
for f in /root/sft /root/dpo; do echo "$f"; cat $f/train.json; echo; head -1 $f/metrics.jsonl; tail -1 $f/metrics.jsonl; done
python3 - <<'PY'
import torch
from transformers import AutoModelForCausalLM
from ponder.models.loader import load
for out in ("/root/sft", "/root/dpo"):
    theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    mine = load(out)
    tokens = torch.tensor([mine.tokenizer.encode_chat([{"role": "user", "content": "What is 4 + 4?"}])])
    with torch.no_grad():
        a, b = theirs(tokens).logits, mine.model(tokens)
    print(out, "transformers vs ponder, max |logit difference|:", float((a - b).abs().max()))
PY
$PONDER generate /root/dpo "What is 4 + 4?" --max-tokens 16
