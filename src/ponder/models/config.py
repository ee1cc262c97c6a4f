"""ModelConfig: the handful of numbers that pin down one member of the Llama 3 family.

Llama 3.x, SmolLM2 and Qwen2.5 share one decoder; they differ in sizes, RoPE base and scaling,
whether q/k/v carry a bias (Qwen2) and whether the output head is tied to the embedding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ponder.errors import UnsupportedModel

ARCHITECTURES = ("llama", "qwen2")


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # "llama" or "qwen2": also the Hugging Face model_type and the GGUF architecture
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    head_dim: int = 0  # 0: dim // n_heads
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # Llama 3.x frequency scaling as the checkpoint states it (Hugging Face `rope_scaling`) ...
    rope_scaling: dict[str, Any] | None = None
    # ... or as per-frequency divisors (GGUF `rope_freqs`); these win when both are present.
    rope_freq_factors: tuple[float, ...] | None = None
    max_seq_len: int = 8192
    tie_embeddings: bool = False
    qkv_bias: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise UnsupportedModel(
                f"architecture {self.arch!r} is not supported: ponder runs {', '.join(ARCHITECTURES)}"
            )
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise UnsupportedModel(f"{self.n_heads} heads do not divide into {self.n_kv_heads} kv heads")

    @property
    def n_params(self) -> int:
        """Parameter count, counting a tied embedding once."""
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        attn = self.dim * (q + 2 * kv) + q * self.dim + (q + 2 * kv) * self.qkv_bias
        layer = attn + 3 * self.dim * self.ffn_dim + 2 * self.dim
        head = 0 if self.tie_embeddings else self.vocab_size * self.dim
        return self.vocab_size * self.dim + self.n_layers * layer + self.dim + head

    def replace(self, **changes: Any) -> ModelConfig:
        if self.head_dim == self.dim // self.n_heads and "head_dim" not in changes:
            changes["head_dim"] = 0  # derived, so derive it again from the new sizes
        return dataclasses.replace(self, **changes)

    # Hugging Face config.json, both ways: the dequantized cache is a checkpoint folder that
    # transformers and vLLM load as well.
    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> ModelConfig:
        arch = hf.get("model_type", "")
        if arch not in ARCHITECTURES:
            raise UnsupportedModel(
                f"model_type {arch!r} is not supported: ponder runs {', '.join(ARCHITECTURES)}"
            )
        factors = hf.get("ponder_rope_freq_factors")
        return cls(
            arch=arch,
            vocab_size=hf["vocab_size"],
            dim=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=hf["num_attention_heads"],
            n_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            ffn_dim=hf["intermediate_size"],
            head_dim=hf.get("head_dim") or 0,
            norm_eps=hf.get("rms_norm_eps", 1e-5),
            rope_theta=hf.get("rope_theta", (hf.get("rope_parameters") or {}).get("rope_theta", 1e4)),
            rope_scaling=_llama3_scaling(hf.get("rope_scaling") or hf.get("rope_parameters")),
            rope_freq_factors=tuple(factors) if factors else None,
            max_seq_len=hf.get("max_position_embeddings", 8192),
            tie_embeddings=hf.get("tie_word_embeddings", False),
            qkv_bias=arch == "qwen2" or hf.get("attention_bias", False),
        )

    def to_hf(self) -> dict[str, Any]:
        hf: dict[str, Any] = {
            "architectures": ["Qwen2ForCausalLM" if self.arch == "qwen2" else "LlamaForCausalLM"],
            "model_type": self.arch,
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.ffn_dim,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "max_position_embeddings": self.max_seq_len,
            "tie_word_embeddings": self.tie_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        }
        if self.arch == "llama":
            hf["attention_bias"] = self.qkv_bias
        if self.rope_freq_factors:
            hf["ponder_rope_freq_factors"] = list(self.rope_freq_factors)
        return hf


def _llama3_scaling(scaling: dict[str, Any] | None) -> dict[str, Any] | None:
    """Keep only Llama 3.x scaling; other kinds (e.g. Qwen's YaRN, off by default) are refused."""
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return None
    if kind != "llama3":
        raise UnsupportedModel(f"rope scaling {kind!r} is not supported: ponder implements llama3 scaling")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    return {"rope_type": "llama3", **{k: scaling[k] for k in keys}}


def _llama3_rope(factor: float) -> dict[str, Any]:
    return {"rope_theta": 500000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}}


# Named presets, as in each model's published config.json. Values not listed take the defaults.
_LLAMA3 = {"arch": "llama", "vocab_size": 128256, "n_kv_heads": 8, "max_seq_len": 131072}
_SMOLLM2 = {"arch": "llama", "vocab_size": 49152, "tie_embeddings": True, "max_seq_len": 8192}
_QWEN25 = {"arch": "qwen2", "vocab_size": 151936, "norm_eps": 1e-6, "rope_theta": 1e6,
           "qkv_bias": True, "tie_embeddings": True, "max_seq_len": 32768}

PRESETS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": {**_LLAMA3, **_llama3_rope(8.0), "dim": 4096, "n_layers": 32, "n_heads": 32,
                     "ffn_dim": 14336},
    "llama-3.2-1b": {**_LLAMA3, **_llama3_rope(32.0), "dim": 2048, "n_layers": 16, "n_heads": 32,
                     "ffn_dim": 8192, "tie_embeddings": True},
    "llama-3.2-3b": {**_LLAMA3, **_llama3_rope(32.0), "dim": 3072, "n_layers": 28, "n_heads": 24,
                     "ffn_dim": 8192, "tie_embeddings": True},
    "smollm2-135m": {**_SMOLLM2, "dim": 576, "n_layers": 30, "n_heads": 9, "n_kv_heads": 3,
                     "ffn_dim": 1536, "rope_theta": 1e5},
    "smollm2-360m": {**_SMOLLM2, "dim": 960, "n_layers": 32, "n_heads": 15, "n_kv_heads": 5,
                     "ffn_dim": 2560, "rope_theta": 1e5},
    "smollm2-1.7b": {**_SMOLLM2, "dim": 2048, "n_layers": 24, "n_heads": 32, "n_kv_heads": 32,
                     "ffn_dim": 8192, "rope_theta": 130000.0},
    "qwen2.5-0.5b": {**_QWEN25, "dim": 896, "n_layers": 24, "n_heads": 14, "n_kv_heads": 2,
                     "ffn_dim": 4864},
    "qwen2.5-1.5b": {**_QWEN25, "dim": 1536, "n_layers": 28, "n_heads": 12, "n_kv_heads": 2,
                     "ffn_dim": 8960},
    "qwen2.5-7b": {**_QWEN25, "vocab_size": 152064, "tie_embeddings": False, "dim": 3584,
                   "n_layers": 28, "n_heads": 28, "n_kv_heads": 4, "ffn_dim": 18944},
}
# Instruct and Coder variants share their base model's architecture.
PRESETS |= {f"{name}-instruct": spec for name, spec in PRESETS.items()}
PRESETS |= {name.replace("qwen2.5-", "qwen2.5-coder-"): spec
            for name, spec in PRESETS.items() if name.startswith("qwen2.5-")}


def preset(name: str) -> ModelConfig:
    try:
        return ModelConfig(**PRESETS[name])
    except KeyError:
        raise UnsupportedModel(
            f"no preset named {name!r}: choose one of {', '.join(sorted(PRESETS))}"
        ) from None
