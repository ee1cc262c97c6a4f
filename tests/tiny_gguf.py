"""Write a tiny model as llama.cpp's converter would: GGUF metadata, permuted q/k, a byte-level BPE vocab."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch

from ponder.models.config import ModelConfig
from ponder.models.gguf import GGUF_NAMES
from ponder.models.transformer import Transformer, rope_inv_freq
from ponder.models.weights import rename, reverse

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_vocab(size: int) -> tuple[list[str], list[int], list[str]]:
    """GPT-2 style: specials, the 256 byte symbols, then merged pairs up to `size` tokens."""
    byte_chars = gguf.vocab.bytes_to_unicode()  # byte -> the printable symbol BPE vocabularies use
    symbols = [byte_chars[b] for b in range(256)]
    tokens, merges = SPECIALS + symbols, []
    # Pairs of letters, digits, space and newline, then digit triples: enough merges that where a
    # pre-tokenizer splits (digits one by one or in threes, spaces before words) changes the ids.
    chars = [byte_chars[ord(c)] for c in "etaoinshr0123456789 \n"]
    pairs = [(a, b) for a in chars for b in chars]
    triples = [(a + b, c) for a, b, c in zip(chars[9:19], chars[10:19] + chars[9:10], chars[11:19] + chars[9:11])]
    for a, b in pairs + triples:
        if len(tokens) >= size:
            break
        if a + b not in tokens:
            tokens.append(a + b)
            merges.append(f"{a} {b}")
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return tokens, types, merges


def permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py permutation of q/k rows."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, model: Transformer, with_rope_freqs: bool = False,
                    qtype: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.F32, pre: str = "smollm") -> None:
    cfg: ModelConfig = model.cfg
    writer = gguf.GGUFWriter(str(path), arch=cfg.arch)
    writer.add_block_count(cfg.n_layers)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_feed_forward_length(cfg.ffn_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    tokens, types, merges = byte_vocab(cfg.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(CHAT_TEMPLATE)
    state = {k: v for k, v in model.state_dict().items() if not (cfg.tie_embeddings and k == "head.weight")}
    names = rename(state, reverse(GGUF_NAMES), "test")
    for name, tensor in state.items():
        w = tensor.float().numpy()
        if cfg.arch == "llama" and name.split(".")[-2] in ("q", "k"):
            w = permute(w, cfg.n_heads if ".q." in name else cfg.n_kv_heads)
        if w.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.quantize(w, qtype)  # float16 for F16, packed bytes otherwise
            writer.add_tensor(names[name], data, raw_dtype=qtype if data.dtype == np.uint8 else None)
        else:
            writer.add_tensor(names[name], w)
    if with_rope_freqs:  # what llama.cpp's converter writes for Llama 3.1: one divisor per frequency
        unscaled = rope_inv_freq(cfg.replace(rope_scaling=None))
        writer.add_tensor("rope_freqs.weight", (unscaled / rope_inv_freq(cfg)).numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def random_model(cfg: ModelConfig) -> Transformer:
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            else:  # small weights, as in trained models, so that sampling has more than one likely token
                p.normal_(0, 0.05)
    return model
