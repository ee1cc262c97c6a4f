"""Training throughput and peak memory: ponder's trainer step beside transformers' on the same weights.

Each configuration runs in its own process (so its peak RSS is its own): full fine-tuning or LoRA, fp32 or bf16
autocast, ponder's decoder (the loss only on the tokens that count: here all of them) or transformers' model with
its own loss. One step = forward, backward and an AdamW update over `--micro-batch` rows of `--length` tokens;
the first step warms up and is not counted.

    .venv/bin/python benchmarks/bench_train.py [--model qwen2.5-coder-0.5b-instruct] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = [("ponder", "full", "fp32"), ("transformers", "full", "fp32"), ("ponder", "full", "bf16"),
           ("ponder", "lora", "fp32"), ("transformers", "lora", "fp32"), ("ponder", "lora", "bf16")]


def one(model_name: str, side: str, kind: str, dtype: str, steps: int, rows: int, length: int) -> dict:
    import torch

    from ponder.models.loader import load
    from ponder.train.data import CONTENT
    from ponder.train.losses import token_logps
    from ponder.train.lora import add_lora

    torch.manual_seed(0)
    loaded = load(model_name)
    ids = torch.randint(0, loaded.config.vocab_size, (rows, length))
    parts = torch.full_like(ids, CONTENT)
    if side == "ponder":
        model = loaded.model.train()

        def loss_of() -> torch.Tensor:
            return -token_logps(model, ids, parts).logps.mean()
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(loaded.path if loaded.path.is_dir() else _folder(loaded),
                                                     dtype=torch.float32).train()
        del loaded

        def loss_of() -> torch.Tensor:
            return model(input_ids=ids, labels=ids).loss
    if kind == "lora":
        if side == "ponder":
            add_lora(model, 16)
        else:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=[
                "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-6)
    times = []
    for _ in range(steps + 1):
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = loss_of()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
    seconds = sum(times[1:]) / steps
    return {"side": side, "kind": kind, "dtype": dtype, "tokens_per_s": rows * length / seconds,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)}


def _folder(loaded) -> str:  # noqa: ANN001
    from ponder.models.loader import dequantized

    return str(dequantized(loaded.path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # side kind dtype: run in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.model, *args.one, args.steps, args.micro_batch, args.length)))
        return
    results = []
    for config in CONFIGS:
        done = subprocess.run([sys.executable, __file__, "--model", args.model, "--steps", str(args.steps),
                               "--micro-batch", str(args.micro_batch), "--length", str(args.length), "--one", *config],
                              capture_output=True, text=True)
        if done.returncode:
            print(f"{' '.join(config)}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{r['side']:>12} {r['kind']:>4} {r['dtype']}: {r['tokens_per_s']:7.1f} tokens/s, peak {r['peak_gib']:.1f} GiB",
              flush=True)
    by = {(r["side"], r["kind"], r["dtype"]): r for r in results}
    print(f"\n{args.model}, {args.micro_batch} rows x {args.length} tokens a step:")
    for kind in ("full", "lora"):
        mine, theirs = by.get(("ponder", kind, "fp32")), by.get(("transformers", kind, "fp32"))
        if mine and theirs:
            print(f"{kind}: ponder / transformers = {mine['tokens_per_s'] / theirs['tokens_per_s']:.2f}x tokens/s, "
                  f"{mine['peak_gib'] / theirs['peak_gib']:.2f}x peak memory")
        bf16 = by.get(("ponder", kind, "bf16"))
        if mine and bf16:
            print(f"{kind}: bf16 autocast / fp32 = {bf16['tokens_per_s'] / mine['tokens_per_s']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
