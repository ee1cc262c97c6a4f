"""One vision-language model, three designs (NVLM): where the image tokens go is the only difference.

- D: every tile's tokens inline in the decoder's sequence, each after its 1-D text tag (`<tile_1>` ...
  `<tile_global_thumbnail>`) when tags are on.
- X: no image token in the sequence; gated cross-attention blocks (before every `xattn_every`-th decoder block)
  attend to all tiles. With tags on, the tags are text in the sequence and each tag's tokens see only its tile.
- H: the thumbnail inline (after its tag), the high-resolution tiles through cross-attention (as X).

The decoder is ponder's own (`models.transformer`), untouched: images come in through its `embeds` and
`before_block` arguments. Text before the image sees no image (Flamingo's rule); text after it sees every tile.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ponder.errors import BadParameter
from ponder.models.kv_cache import DenseKVCache
from ponder.models.tokenizer import Tokenizer
from ponder.models.transformer import Transformer
from ponder.vision.connectors import GatedCrossAttention
from ponder.vision.encoder import EncoderConfig, ImageEncoder, to_pixels
from ponder.vision.projector import Projector
from ponder.vision.tiling import Tiles, tile

DESIGNS = ("d", "x", "h")
IMAGE = "<image>"  # where the image goes in a user message's text
GLOBAL_TAG = "<tile_global_thumbnail>"


@dataclass(frozen=True)
class VisionConfig:
    design: str = "d"
    tags: bool = True
    thumbnail: bool = True
    max_tiles: int = 6
    xattn_every: int = 6  # X and H: a gated cross-attention block before decoder blocks 0, 6, 12, ...
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise BadParameter(f"unknown design {self.design!r}: use d, x or h")
        if self.design == "h" and not self.thumbnail:
            raise BadParameter("H puts the thumbnail in the sequence: without it, it is X (use design x)")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "encoder": self.encoder.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VisionConfig:
        return cls(**{**data, "encoder": EncoderConfig.from_json(data["encoder"])})


@dataclass
class Sequence:
    """One prompt (and answer) laid out for the decoder."""
    ids: list[int]  # token ids; image positions hold 0 and are overwritten by `inline`
    inline: list[tuple[int, int]]  # (position, tile index): that tile's tokens start there
    sees: list[list[int] | None]  # per position, the tiles its cross-attention sees (None: all, [] none)
    memory: list[int]  # tile indices that go through cross-attention
    labels: list[int]  # -100 where there is no loss
    n_image_inline: int = 0


def default_device() -> str:
    """Where a vision model trains and runs unless told: the GPU where there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class VisionLanguageModel(nn.Module):
    def __init__(self, decoder: Transformer, tokenizer: Tokenizer, cfg: VisionConfig):
        super().__init__()
        self.decoder, self.tokenizer, self.cfg = decoder, tokenizer, cfg
        self.encoder = ImageEncoder(cfg.encoder)
        self.projector = Projector(cfg.encoder.dim, decoder.cfg.dim)
        self.tokens_per_tile = (cfg.encoder.grid // self.projector.factor) ** 2
        layers = range(0, decoder.cfg.n_layers, cfg.xattn_every) if cfg.design != "d" else []
        self.xattn = nn.ModuleDict({str(i): GatedCrossAttention(decoder.cfg) for i in layers})

    @property
    def device(self) -> torch.device:
        return self.decoder.embed.weight.device

    # --- layout ---------------------------------------------------------------------------------------------

    def tiles(self, image: Image.Image) -> Tiles:
        return tile(image, self.cfg.max_tiles, self.cfg.encoder.size, self.cfg.thumbnail)

    def layout(self, question: str, tiles: Tiles | None, answer: str | None = None) -> Sequence:
        """The chat prompt for `question` about an image cut into `tiles` (None: a text question), and the answer's
        tokens with their labels when training."""
        tok = self.tokenizer
        content = f"{IMAGE}\n{question}" if tiles is not None else question
        prompt = tok.render_chat([{"role": "user", "content": content}])
        before, _, after = prompt.partition(IMAGE) if tiles is not None else (prompt, "", "")
        seq = Sequence([], [], [], [], [])
        self._text(seq, tok.encode(before), sees=[])
        if tiles is not None:
            self._image(seq, len(tiles.tiles), tiles.thumbnail is not None)
            self._text(seq, tok.encode(after, add_bos=False), sees=None)
        if answer is not None:
            full = tok.render_chat([{"role": "user", "content": content}, {"role": "assistant", "content": answer}],
                                   add_generation_prompt=False)
            reply = tok.encode(full[len(prompt):], add_bos=False)  # the answer and the end of the turn
            self._text(seq, reply, sees=None if tiles is not None else [], loss=True)
        return seq

    def _image(self, seq: Sequence, n_tiles: int, thumbnail: bool) -> None:
        tags = [f"<tile_{i + 1}>" for i in range(n_tiles)] + ([GLOBAL_TAG] if thumbnail else [])
        for index, tag in enumerate(tags):
            inline = self.cfg.design == "d" or (self.cfg.design == "h" and tag == GLOBAL_TAG)
            if self.cfg.tags:
                self._text(seq, self.tokenizer.encode(tag, special=False, add_bos=False),
                           sees=[] if inline else [index])
            if inline:
                seq.inline.append((len(seq.ids), index))
                self._text(seq, [0] * self.tokens_per_tile, sees=[])
                seq.n_image_inline += self.tokens_per_tile
            else:
                seq.memory.append(index)

    @staticmethod
    def _text(seq: Sequence, ids: list[int], sees: list[int] | None, loss: bool = False) -> None:
        seq.ids += ids
        seq.sees += [sees] * len(ids)
        seq.labels += ids if loss else [-100] * len(ids)

    # --- forward --------------------------------------------------------------------------------------------

    def image_tokens(self, tiles: list[Tiles]) -> list[Tensor]:
        """Per image, its tiles' tokens [n_tiles (+1), tokens_per_tile, dim]: one encoder pass for all of them."""
        images = [[*t.tiles, *([t.thumbnail] if t.thumbnail is not None else [])] for t in tiles]
        flat = [im for group in images for im in group]
        if not flat:
            return []
        tokens = self.projector(self.encoder(to_pixels(flat).to(self.device))).to(self.decoder.embed.weight.dtype)
        return list(tokens.split([len(group) for group in images]))

    def inputs(self, seqs: list[Sequence], tokens: list[Tensor | None]) -> tuple[Tensor, Tensor, Any]:
        """Right-padded embeddings [B, T, dim], labels [B, T] and the cross-attention hook (None: no image)."""
        T = max(len(s.ids) for s in seqs)
        ids = torch.tensor([s.ids + [0] * (T - len(s.ids)) for s in seqs], device=self.device)
        labels = torch.tensor([s.labels + [-100] * (T - len(s.labels)) for s in seqs], device=self.device)
        embeds = self.decoder.embed(ids)
        rows = []
        for b, (seq, toks) in enumerate(zip(seqs, tokens)):
            row = embeds[b]
            for position, index in seq.inline:  # splice each inline tile's tokens in (out of place, for autograd)
                row = torch.cat((row[:position], toks[index], row[position + self.tokens_per_tile:]))
            rows.append(row)
        hook = self._hook(seqs, tokens, T) if self.xattn and any(s.memory for s in seqs) else None
        return torch.stack(rows), labels, hook

    def _hook(self, seqs: list[Sequence], tokens: list[Tensor | None], T: int):
        M = max(len(s.memory) for s in seqs) * self.tokens_per_tile
        dim = self.decoder.cfg.dim
        memory = torch.zeros(len(seqs), M, dim, dtype=self.decoder.embed.weight.dtype, device=self.device)
        mask = torch.zeros(len(seqs), T, M, dtype=torch.bool)  # filled a token at a time: on the CPU, moved once
        for b, (seq, toks) in enumerate(zip(seqs, tokens)):
            where = {}
            for slot, index in enumerate(seq.memory):
                start = slot * self.tokens_per_tile
                memory[b, start:start + self.tokens_per_tile] = toks[index]
                where[index] = slice(start, start + self.tokens_per_tile)
            for t, sees in enumerate(seq.sees):
                for index in (seq.memory if sees is None else sees):
                    if index in where:
                        mask[b, t, where[index]] = True
        return CrossAttention(self.xattn, memory, mask.to(self.device))

    def loss(self, seqs: list[Sequence], tiles: list[Tiles | None]) -> tuple[Tensor, int]:
        """Mean next-token loss over the answers' tokens, and how many tokens that is."""
        embeds, labels, hook = self.inputs(seqs, self.encode(tiles))
        logits = self.decoder.head(self.decoder.hidden_states(None, embeds=embeds, before_block=hook))
        targets = labels[:, 1:]
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                           ignore_index=-100)
        return loss, int((targets != -100).sum())

    @torch.inference_mode()
    def generate(self, image: Image.Image | None, question: str, max_tokens: int = 32) -> Generated:
        """Greedy answer to a question about an image (None: a text question)."""
        start = time.perf_counter()
        tiles = self.tiles(image) if image is not None else None
        seq = self.layout(question, tiles)
        embeds, _, hook = self.inputs([seq], self.encode([tiles]))
        cache = DenseKVCache(self.decoder.cfg, 1, len(seq.ids) + max_tokens, embeds.dtype, self.device)
        positions = torch.arange(len(seq.ids), device=self.device)[None]
        out: list[int] = []
        while True:
            h = self.decoder.hidden_states(None, positions, cache, embeds=embeds, before_block=hook)
            token = int(self.decoder.head(h[:, -1]).argmax(-1))
            if token in self.tokenizer.stop_ids or len(out) == max_tokens:
                break
            out.append(token)
            if hook is not None:
                hook.generating = True
            embeds, positions = self.decoder.embed(torch.tensor([[token]], device=self.device)), positions[:, -1:] + 1
        return Generated(self.tokenizer.decode(out), len(seq.ids), seq.n_image_inline, len(out),
                         time.perf_counter() - start)

    def encode(self, tiles: list[Tiles | None]) -> list[Tensor | None]:
        present = [t for t in tiles if t is not None]
        it = iter(self.image_tokens(present))
        return [next(it) if t is not None else None for t in tiles]


@dataclass(frozen=True)
class Generated:
    text: str
    prompt_tokens: int  # in the decoder's sequence, image tokens included
    image_tokens: int  # of those, image tokens
    new_tokens: int
    seconds: float


class CrossAttention:
    """The decoder's `before_block` hook: the gated blocks' keys and values computed once per image, then applied
    to the prompt's tokens (with the layout's mask) and, when `generating`, to one new token a step (it sees every
    tile)."""

    def __init__(self, blocks: nn.ModuleDict, memory: Tensor, mask: Tensor):
        self.blocks = blocks
        self.keys_values = {name: block.keys_values(memory) for name, block in blocks.items()}
        self.mask = mask  # [B, T, M]
        self.step_mask = mask.any(1, keepdim=True)  # [B, 1, M]: a generated token sees every tile the prompt saw
        self.generating = False

    def __call__(self, layer: int, x: Tensor) -> Tensor:
        if str(layer) not in self.blocks:
            return x
        mask = self.step_mask.expand(-1, x.shape[1], -1) if self.generating else self.mask
        return self.blocks[str(layer)](x, self.keys_values[str(layer)], mask)
