"""Carry the evidence runs from one machine to the next: runs/ is not in git, evidence/ is.

    .venv/bin/python benchmarks/snapshot.py save      # runs/ -> evidence/, to commit
    .venv/bin/python benchmarks/snapshot.py restore   # evidence/ -> runs/, only what runs/ lacks

A run store (runs/NAME.db) becomes evidence/NAME.store.jsonl: its settings on the first line, then one
result a line in the order stored. A benchmark's own file (runs/NAME.jsonl, one question a line) becomes
evidence/NAME.jsonl. Training (runs/train/) keeps its data sets and each run's metrics and settings in
evidence/train/, and a finished LoRA run its adapters (adapter/, fp32, packed losslessly: ~30 MB for the 0.5B at
rank 16): restored, the same `ponder train` command makes the same model folder again from them and its base, where
training it again on another machine would give another model (bf16 kernels differ in their last bits). The
policy's hidden states are left out (most of the bytes): what reads them computes them again, one pass per sample.
Restoring adds only the items runs/ lacks, so repeating it is harmless, and a restored store continues as the same
run (same settings, same keys).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import struct
from pathlib import Path

import numpy as np

from ponder.jobs import RunStore, write_whole
from ponder.train.lora import ADAPTER


def without_states(record: dict) -> dict:
    if "samples" not in record:
        return record
    return record | {"samples": [{k: v for k, v in s.items() if k != "states"} for s in record["samples"]]}


VISION_FILES = ("train.json", "metrics.jsonl", "vision.json", "bench-*.jsonl", "encoder.json", "encoder.safetensors")
BENCH_ROWS = 300  # benchmarks/issue24.sh: 100 questions of each of three kinds


PACKED = Path(ADAPTER).name + ".xz"  # evidence keeps adapters packed (`packed`)


def packed(data: bytes) -> bytes:
    """Lossless and smaller: fp32 tensors compress poorly byte after byte but well by byte plane (their exponent
    bytes are much alike), so the file's bytes in four planes, then xz: a 0.5B adapter at rank 16, 35.2 -> 29.6 MB,
    under the 32 MB a tracked file may take. (safetensors aligns its tensors to 8 bytes.)"""
    planes = np.frombuffer(data + bytes(-len(data) % 4), np.uint8).reshape(-1, 4).T.tobytes()
    return struct.pack("<Q", len(data)) + lzma.compress(planes)


def unpacked(blob: bytes) -> bytes:
    size = struct.unpack("<Q", blob[:8])[0]
    return np.frombuffer(lzma.decompress(blob[8:]), np.uint8).reshape(4, -1).T.tobytes()[:size]


def write_lines(path: Path, records: list[dict]) -> None:
    """All or nothing: a snapshot killed half-way leaves the previous one."""
    write_whole(path, "".join(json.dumps(r) + "\n" for r in records))


def save(runs: Path, evidence: Path) -> None:
    evidence.mkdir(exist_ok=True)
    for db in sorted(runs.glob("*.db")):
        with RunStore.existing(db) as store:
            records = [{"settings": store.settings}] + [
                {"key": key, "result": without_states(result)} for key, result in store.items()]
        write_lines(evidence / f"{db.stem}.store.jsonl", records)
        print(f"{db} -> {evidence / f'{db.stem}.store.jsonl'}: {len(records) - 1} results")
    for lines in sorted(runs.glob("*.jsonl")):
        rows = [without_states(json.loads(line)) for line in lines.read_text().splitlines() if line.strip()]
        write_lines(evidence / lines.name, rows)
        print(f"{lines} -> {evidence / lines.name}: {len(rows)} rows")
    for made in sorted([*runs.glob("train/*.jsonl"), *runs.glob("train/*/metrics.jsonl"),
                        *runs.glob("train/*/train.json")]):
        write_whole(evidence / made.relative_to(runs), made.read_bytes())
        print(f"{made} -> {evidence / made.relative_to(runs)}")
    for made in sorted(runs.glob(f"train/*/{ADAPTER}")):  # written once, at the end of its run
        target = evidence / made.relative_to(runs).with_name(PACKED)
        if not target.exists() or target.stat().st_mtime < made.stat().st_mtime:
            write_whole(target, packed(made.read_bytes()))
            print(f"{made} -> {target}")
    for made in sorted(f for pattern in VISION_FILES for f in runs.glob(f"vision/*/{pattern}")):
        write_whole(evidence / made.relative_to(runs), made.read_bytes())
    if (runs / "vision").is_dir():
        print(f"{runs / 'vision'} -> {evidence / 'vision'}: settings, metrics, answers, the encoder's weights")


def restore(evidence: Path, runs: Path) -> None:
    runs.mkdir(exist_ok=True)
    for snapshot in sorted(evidence.glob("*.store.jsonl")):
        head, *rows = [json.loads(line) for line in snapshot.read_text().splitlines()]
        db = runs / snapshot.name.replace(".store.jsonl", ".db")
        with RunStore(db, head["settings"]) as store:
            done = store.done()
            missing = [r for r in rows if r["key"] not in done]
            for r in missing:
                store.put(r["key"], r["result"])
        print(f"{snapshot} -> {db}: {len(missing)} results added, {len(done)} there already")
    for snapshot in sorted(set(evidence.glob("*.jsonl")) - set(evidence.glob("*.store.jsonl"))):
        if "id" not in json.loads(snapshot.read_text().splitlines()[0]):
            continue  # a log kept as evidence only (a training run's metrics), not a benchmark's rows to resume
        target = runs / snapshot.name
        have = {json.loads(line)["id"] for line in target.read_text().splitlines()} if target.exists() else set()
        missing = [line for line in snapshot.read_text().splitlines() if json.loads(line)["id"] not in have]
        with target.open("a") as f:  # whole lines: the benchmark appends the same way
            f.writelines(line + "\n" for line in missing)
        print(f"{snapshot} -> {target}: {len(missing)} rows added, {len(have)} there already")
    for data in sorted(evidence.glob("train/*.jsonl")):  # the training sets, so a model is trained again on them
        target = runs / data.relative_to(evidence)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.read_bytes())
            print(f"{data} -> {target}")
    for adapter in sorted(evidence.glob(f"train/*/{Path(ADAPTER).parent}/{PACKED}")):  # a finished LoRA run
        run, target = adapter.parent.parent, runs / adapter.parent.parent.relative_to(evidence)
        if not target.exists():
            for name in ("train.json", "metrics.jsonl"):
                write_whole(target / name, (run / name).read_bytes())
            write_whole(target / ADAPTER, unpacked(adapter.read_bytes()))
            print(f"{run} -> {target}: its adapters; `ponder train` makes the model again from them")


    for folder in sorted(evidence.glob("vision/*")):
        # The encoder comes back whole (its weights are in evidence); a design only once its table answers are all
        # there (its weights are not: made again in ~0.3 hours if needed), else it is trained again.
        target = runs / folder.relative_to(evidence)
        bench = folder / "bench-1.jsonl"
        whole = (folder / "encoder.safetensors").exists() or (
            bench.exists() and len(bench.read_text().splitlines()) >= BENCH_ROWS)
        if whole and not target.exists():
            target.mkdir(parents=True)
            for f in folder.iterdir():
                (target / f.name).write_bytes(f.read_bytes())
            print(f"{folder} -> {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("save", "restore"))
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)
    runs, evidence = Path("runs"), Path("evidence")
    save(runs, evidence) if args.action == "save" else restore(evidence, runs)


if __name__ == "__main__":
    main()
