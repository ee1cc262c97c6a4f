"""Load any model ponder knows: a registry name, hf:ORG/REPO, a .gguf file or a checkpoint folder.

A GGUF file is dequantized once and cached under PONDER_HOME/dequantized as a Hugging Face
checkpoint folder (fp32 safetensors): later loads memory-map it instead of dequantizing again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ponder.models.config import ModelConfig
from ponder.models.gguf import load_gguf
from ponder.models.hf import read_folder, write_folder
from ponder.models.registry import check_free_space, ponder_home, resolve
from ponder.models.tokenizer import Tokenizer
from ponder.models.transformer import Transformer
from ponder.models.weights import build_model


@dataclass
class LoadedModel:
    model: Transformer
    tokenizer: Tokenizer
    path: Path  # what was loaded: the .gguf file or the checkpoint folder

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg


def load(spec: str | Path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    path = resolve(str(spec))
    folder = path if path.is_dir() else dequantized(path)
    cfg, tensors = read_folder(folder)
    return LoadedModel(build_model(cfg, tensors, str(path), dtype), Tokenizer.from_folder(folder), path)


def dequantized(gguf_path: Path) -> Path:
    """The cached checkpoint folder for a GGUF file, made (atomically) on first use."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = ponder_home() / "dequantized" / f"{gguf_path.parent.name}-{key}"
    if folder.exists():
        return folder
    cfg, tensors, tokenizer = load_gguf(gguf_path)
    need = sum(t.numel() * t.element_size() for t in tensors.values())
    check_free_space(folder.parent, need, f"the dequantized checkpoint of {gguf_path.name} (made once)")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        write_folder(staging, cfg, tensors, tokenizer)
        os.rename(staging, folder)  # atomic; fails only if another process finished first
    except OSError:
        if not folder.exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder

