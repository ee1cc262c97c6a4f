"""A trained vision-language model on disk: what was trained, never the base decoder (which is pulled as today).

FOLDER/vision.json: the design, the base model's name, the LoRA rank and scale; FOLDER/vision.safetensors (fp16):
the encoder, the projector, the cross-attention blocks, and each LoRA adapter's A and B. Loading pulls the base
decoder by name and folds each adapter into its weight (W + scale * B @ A: the arithmetic peft's merge does, written
out here so that loading needs no training library).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ponder.errors import BadCheckpoint, ModelNotPulled
from ponder.models.loader import load
from ponder.vision.model import VisionConfig, VisionLanguageModel, default_device

CONFIG, WEIGHTS = "vision.json", "vision.safetensors"
SHIPPED = ("nvlm-d-smollm2", "nvlm-x-smollm2", "nvlm-h-smollm2")  # trained here, shipped in the package
DESIGN_OF = {name: name.split("-")[1] for name in SHIPPED}


def shipped_folder(name: str) -> Path:
    return Path(__file__).parent / "trained" / name


def is_vision_folder(path: Path) -> bool:
    return (path / CONFIG).is_file()


def vision_folder(spec: str) -> Path | None:
    """The vision model folder a name or path means; None for a text model."""
    if spec in SHIPPED:
        folder = shipped_folder(spec)
        if not is_vision_folder(folder):
            raise ModelNotPulled(f"{spec} is not trained in this copy of ponder: train it with `ponder train vision "
                                 f"--design {DESIGN_OF[spec]} --encoder DIR --out {folder}` (docs/vision.md)")
        return folder
    path = Path(spec).expanduser()
    return path if is_vision_folder(path) else None


def save_vision(folder: Path, model: VisionLanguageModel, base: str, adapters: dict[str, Tensor],
                lora_rank: int, lora_scale: float) -> None:
    """`adapters`: decoder module path + ".lora_A" / ".lora_B" -> tensor. Written atomically, config last."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {f"{name}.{k}": v for name in ("encoder", "projector", "xattn")
             for k, v in getattr(model, name).state_dict().items()}
    tensors = {k: v.detach().to(torch.float16).cpu().contiguous() for k, v in {**parts, **adapters}.items()}
    partial = folder / (WEIGHTS + ".partial")
    save_file(tensors, partial)
    os.replace(partial, folder / WEIGHTS)
    config = {"base": base, "lora_rank": lora_rank, "lora_scale": lora_scale, **model.cfg.to_json()}
    (folder / (CONFIG + ".partial")).write_text(json.dumps(config, indent=1) + "\n")
    os.replace(folder / (CONFIG + ".partial"), folder / CONFIG)


def load_vision(folder: Path, device: str | None = None) -> VisionLanguageModel:
    """`device`: where it runs (default: the GPU where there is one)."""
    try:
        config = json.loads((folder / CONFIG).read_text())
        tensors = load_file(folder / WEIGHTS)
        base, scale = config.pop("base"), config.pop("lora_scale")
        config.pop("lora_rank")
        cfg = VisionConfig.from_json(config)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadCheckpoint(f"{folder} is not a whole vision model ({type(e).__name__}: {e}): train it again") from None
    loaded = load(base)
    model = VisionLanguageModel(loaded.model, loaded.tokenizer, cfg)
    for name in ("encoder", "projector", "xattn"):
        part = {k.split(".", 1)[1]: v.float() for k, v in tensors.items() if k.startswith(name + ".")}
        try:
            getattr(model, name).load_state_dict(part)
        except RuntimeError as e:
            raise BadCheckpoint(f"{folder}: the {name} does not fit its config ({str(e).splitlines()[0]})") from None
    with torch.no_grad():
        for key in [k for k in tensors if k.endswith(".lora_A")]:
            path = key.removesuffix(".lora_A")
            weight = loaded.model.get_submodule(path.removeprefix("decoder.")).weight
            weight += scale * (tensors[path + ".lora_B"].float() @ tensors[key].float()).to(weight.dtype)
    return model.to(device or default_device()).eval()
