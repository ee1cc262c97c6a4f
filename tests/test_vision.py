"""The vision layer: tiling against hand-worked cases, the three designs on the same decoder (exactly the text model
when the image can have no effect), the synthetic image tasks, and bad images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from reference import ponder_model

from ponder.errors import BadImage, BadParameter
from ponder.tasks.images import caption, questions
from ponder.vision.connectors import GatedCrossAttention
from ponder.vision.encoder import EncoderConfig
from ponder.vision.model import VisionConfig, VisionLanguageModel
from ponder.vision.projector import pixel_shuffle
from ponder.vision.tiling import closest_grid, grids, open_image, tile

SMALL_ENCODER = EncoderConfig(size=64, stem=(8,), dim=16, layers=1, heads=2)  # 64-pixel tiles, 16 tokens a tile


@pytest.mark.parametrize(("width", "height", "grid"), [
    (896, 896, (2, 2)),  # square and large: the tie between 1x1 and 2x2 goes to 2x2 (more than half its pixels)
    (448, 448, (1, 1)),  # square and one tile's size: 1x1
    (1344, 448, (3, 1)),
    (448, 1344, (1, 3)),
    (800, 600, (3, 2)),  # 4:3 -> 3:2 is the closest ratio with at most 6 tiles (4:3 itself would be 12)
    (100, 5000, (1, 6)),  # extreme: as tall as 6 tiles allow
    (1000, 500, (2, 1)),
])
def test_the_grid_is_the_closest_aspect_ratio_with_at_most_six_tiles(width: int, height: int, grid: tuple) -> None:
    assert closest_grid(width, height) == grid


def test_tiles_cover_the_grid_and_a_thumbnail_comes_only_with_several_tiles() -> None:
    assert grids(6)[:4] == [(1, 1), (1, 2), (2, 1), (1, 3)]
    assert all(c * r <= 6 for c, r in grids(6)) and len(grids(6)) == 14
    wide = Image.new("RGB", (1344, 448), "white")
    wide.paste((255, 0, 0), (448, 0, 896, 448))  # the middle third red
    tiles = tile(wide)
    assert tiles.grid == (3, 1) and len(tiles.tiles) == 3 and all(t.size == (448, 448) for t in tiles.tiles)
    assert tiles.tiles[1].getpixel((200, 200)) == (255, 0, 0) and tiles.tiles[0].getpixel((200, 200)) == (255,) * 3
    assert tiles.thumbnail is not None and tiles.thumbnail.size == (448, 448)
    assert tile(wide, thumbnail=False).thumbnail is None
    assert tile(Image.new("RGB", (300, 300))).thumbnail is None  # one tile: it is the whole image already


def test_a_huge_image_becomes_at_most_six_tiles_and_a_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    Image.new("L", (12000, 9000), 255).save(path)  # 108 megapixels, under Pillow's safety limit
    tiles = tile(open_image(path))
    assert len(tiles.tiles) == 6 and tiles.grid == (3, 2) and tiles.thumbnail is not None


def test_bad_images_get_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not.png").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    truncated = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(truncated, format="PNG")
    (tmp_path / "cut.png").write_bytes(truncated.getvalue()[:60])
    for name, says in (("not.png", "not a readable image"), ("empty.png", "not a readable image"),
                       ("cut.png", "not a readable image"), ("missing.png", "does not exist")):
        with pytest.raises(BadImage, match=says):
            open_image(tmp_path / name)
    with pytest.raises(BadImage, match="not a readable image"):
        open_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)


def test_pixel_shuffle_puts_each_2x2_block_into_one_token() -> None:
    x = torch.arange(4 * 4 * 3, dtype=torch.float32).view(1, 4, 4, 3)
    y = pixel_shuffle(x)
    assert y.shape == (1, 4, 12)
    assert y[0, 0].tolist() == [*x[0, 0, 0], *x[0, 0, 1], *x[0, 1, 0], *x[0, 1, 1]]
    assert y[0, 3].tolist() == [*x[0, 2, 2], *x[0, 2, 3], *x[0, 3, 2], *x[0, 3, 3]]


@pytest.fixture(scope="module")
def smol():
    return ponder_model("smollm2-135m-instruct")


def vlm(smol, design: str, **settings) -> VisionLanguageModel:
    return VisionLanguageModel(smol.model, smol.tokenizer,
                               VisionConfig(design=design, encoder=SMALL_ENCODER, **settings)).eval()


def logits(model: VisionLanguageModel, image: Image.Image | None, question: str) -> tuple[torch.Tensor, list[int]]:
    tiles = model.tiles(image) if image is not None else None
    seq = model.layout(question, tiles)
    embeds, _, hook = model.inputs([seq], model.encode([tiles]))
    with torch.no_grad():
        return model.decoder.head(model.decoder.hidden_states(None, embeds=embeds, before_block=hook))[0], seq.ids


@pytest.mark.parametrize("design", ["d", "x", "h"])
def test_without_an_image_every_design_is_exactly_the_text_model(smol, design: str) -> None:
    model = vlm(smol, design)
    got, ids = logits(model, None, "What is 17 + 25?")
    with torch.no_grad():
        base = smol.model(torch.tensor([ids]))[0]
    assert torch.equal(got, base)


@pytest.mark.parametrize("tags", [True, False])
def test_x_with_its_gates_at_zero_is_exactly_the_text_model_on_the_same_tokens(smol, tags: bool) -> None:
    model = vlm(smol, "x", tags=tags)
    image = questions("reading", 1, 0)[0].image
    got, ids = logits(model, image, "What number is written in the image?")
    with torch.no_grad():
        base = smol.model(torch.tensor([ids]))[0]
    assert torch.equal(got, base)
    assert ("<tile_1>" in smol.tokenizer.decode(ids)) == tags
    with torch.no_grad():  # and the blocks do act once their gates open
        for block in model.xattn.values():
            block.attn_gate.fill_(0.5)
    assert not torch.equal(logits(model, image, "What number is written in the image?")[0], base)


def test_h_with_its_gates_at_zero_is_the_decoder_on_the_thumbnail_alone(smol) -> None:
    """H's tiles go through gates at 0: what remains is D with the thumbnail as its only image."""
    image = questions("counting", 1, 0)[0].image
    h = vlm(smol, "h", tags=False)
    d = vlm(smol, "d", tags=False)
    d.encoder.load_state_dict(h.encoder.state_dict())
    d.projector.load_state_dict(h.projector.state_dict())
    h_logits, h_ids = logits(h, image, "How many?")
    tiles = d.tiles(image)
    seq = d.layout("How many?", type(tiles)([], tiles.thumbnail, tiles.grid))  # the thumbnail, no tiles
    thumb_only = h.encode([tiles])[0][-1:]
    embeds, _, _ = d.inputs([seq], [thumb_only])
    with torch.no_grad():
        d_logits = d.decoder.head(d.decoder.hidden_states(None, embeds=embeds))[0]
    assert h_ids == seq.ids and torch.equal(h_logits, d_logits)


def test_image_tokens_per_design_and_the_answer_is_the_only_loss(smol) -> None:
    q = questions("reading", 1, 3)[0]
    d, x, h = (vlm(smol, k) for k in "dxh")
    tiles = d.tiles(q.image)  # 896 x 896 at 64-pixel tiles: 2 x 2 and a thumbnail
    assert tiles.grid == (2, 2)
    per_tile = d.tokens_per_tile
    assert per_tile == (SMALL_ENCODER.grid // 2) ** 2
    seqs = {k: m.layout(q.question, tiles, q.answer) for k, m in zip("dxh", (d, x, h))}
    assert seqs["d"].n_image_inline == 5 * per_tile and seqs["d"].memory == []
    assert seqs["x"].n_image_inline == 0 and seqs["x"].memory == [0, 1, 2, 3, 4]
    assert seqs["h"].n_image_inline == per_tile and seqs["h"].memory == [0, 1, 2, 3]
    for seq in seqs.values():
        learned = [t for t in seq.labels if t != -100]
        assert smol.tokenizer.decode(learned).startswith(q.answer)
        assert learned == seq.ids[-len(learned):]
    d.decoder.requires_grad_(False)  # frozen, as in training (and no weight gradients to compute)
    try:
        loss, n = d.loss([seqs["d"]], [tiles])
        loss.backward()
    finally:
        d.decoder.requires_grad_(True)
    assert n == len([t for t in seqs["d"].labels if t != -100]) and loss.item() > 0
    assert d.projector.mlp[1].weight.grad is not None and d.encoder.positions.grad is not None


def test_h_without_a_thumbnail_is_refused_as_x() -> None:
    with pytest.raises(BadParameter, match="use design x"):
        VisionConfig(design="h", thumbnail=False)


def test_a_gated_block_at_zero_changes_nothing_even_where_a_token_sees_no_image() -> None:
    from ponder.models.config import ModelConfig

    cfg = ModelConfig(arch="llama", vocab_size=10, dim=16, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=32)
    block = GatedCrossAttention(cfg)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.rand(2, 5, 7) > 0.5
    mask[0, 2] = False  # a token that sees no image
    assert torch.equal(block(x, block.keys_values(memory), mask), x)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
        block.mlp_gate.fill_(1.0)
    y = block(x, block.keys_values(memory), mask)
    assert torch.equal(y[0, 2], x[0, 2]) and not torch.equal(y[1], x[1]) and torch.isfinite(y).all()


def test_synthetic_questions_are_the_same_for_a_seed_and_answers_check() -> None:
    a, b = questions("reading", 3, 5), questions("reading", 3, 5)
    assert [q.answer for q in a] == [q.answer for q in b] and a[0].image.tobytes() == b[0].image.tobytes()
    assert all(len(q.answer) == 6 and q.image.size == (896, 896) for q in a)
    assert a[0].check(f"The number is {a[0].answer}.") and not a[0].check("I see 12345.")
    counts = questions("counting", 20, 0)
    assert {q.answer for q in counts} <= set("0123456") and len({q.answer for q in counts}) > 2
    for q in counts[:5] + a:  # a caption names the number and counts every (shape, colour) drawn
        words = caption(q)
        assert (f"The number {q.answer}." in words) == (q.kind == "reading")
        colour, shape = q.question.split()[2:4] if q.kind == "counting" else ("", "")
        if q.kind == "counting" and q.answer != "0":
            assert f"{q.answer} {colour} {shape.rstrip('s')}" in words
        assert sum(int(w) for w in words.replace(",", " ").split() if w.isdigit()) == len(q.shapes)
    text = questions("text", 2, 0)
    assert text[0].image is None and text[0].check(text[0].answer)
    with pytest.raises(ValueError, match="unknown image task"):
        questions("maps", 1, 0)
