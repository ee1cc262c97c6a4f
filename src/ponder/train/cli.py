"""`ponder train sft | dpo | data`: learn from search, on ponder's own model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="Fine-tune a model (SFT, DPO; full or LoRA) on what search verified; "
                  "train the NVLM designs (encoder, vision).")
out = Console(highlight=False, soft_wrap=True)

Model = Annotated[str, typer.Argument(help="A registry name, .gguf file or checkpoint folder.")]
Data = Annotated[Path, typer.Argument(help="JSONL rows (see `ponder train --help`).")]
Out = Annotated[Path, typer.Option("--out", help="The folder: checkpoints while training, then the model.")]
Steps = Annotated[int | None, typer.Option(help="Optimizer steps (default: one pass over the data).")]
LoraRank = Annotated[int, typer.Option(help="Train LoRA adapters of this rank (merged into the saved model); "
                                            "0 trains every weight.")]
BatchSize = Annotated[int, typer.Option(help="Rows (DPO: pairs) per optimizer step, all processes together.")]
MicroBatch = Annotated[int, typer.Option(help="Rows per forward pass (memory).")]
Lr = Annotated[float | None, typer.Option(help="Peak learning rate (default: SFT 1e-5, LoRA 2e-4; DPO 1e-6, "
                                               "LoRA 2e-5).")]
MaxLength = Annotated[int, typer.Option(help="Longest row in tokens; longer ones are skipped and counted.")]
SaveEvery = Annotated[int, typer.Option(help="Checkpoint every this many steps (a restart loses at most these).")]
Bf16 = Annotated[bool | None, typer.Option(help="bf16 autocast (default: on a GPU only).")]
Name = Annotated[str | None, typer.Option(help="Also register the trained model under this name, for every "
                                                "command (`ponder generate NAME ...`, `ponder models`).")]


def _settings(kind: str, **given: object) -> object:
    import torch

    from ponder.train.trainer import TrainSettings

    if given.get("bf16") is None:
        given["bf16"] = torch.cuda.is_available()
    return TrainSettings(kind=kind, **given)  # type: ignore[arg-type]


def _run(model: str, data: Path, out_path: Path, settings: object, name: str | None) -> None:
    from ponder.models.registry import check_name, register
    from ponder.train.trainer import train

    if name:
        check_name(name)  # before hours of training
    train(model, data, out_path, settings, say=out.print)  # type: ignore[arg-type]
    if name:
        register(name, out_path)
        out.print(f"registered as {name}: `ponder generate {name} \"...\"`")


@app.command()
def sft(model: Model, data: Data, out_path: Out, steps: Steps = None, lora_rank: LoraRank = 0,
        batch_size: BatchSize = 16, micro_batch: MicroBatch = 4, lr: Lr = None, max_length: MaxLength = 1024,
        save_every: SaveEvery = 50, bf16: Bf16 = None, name: Name = None,
        seed: Annotated[int, typer.Option(help="Orders the rows.")] = 0) -> None:
    """Supervised fine-tuning on rows {"messages": [...]}: the loss is on the assistant's tokens only."""
    settings = _settings("sft", steps=steps, lora_rank=lora_rank, batch_size=batch_size, micro_batch=micro_batch,
                         lr=lr, max_length=max_length, save_every=save_every, bf16=bf16, seed=seed)
    _run(model, data, out_path, settings, name)


@app.command()
def dpo(model: Model, data: Data, out_path: Out, steps: Steps = None, lora_rank: LoraRank = 0,
        batch_size: BatchSize = 16, micro_batch: MicroBatch = 2, lr: Lr = None, max_length: MaxLength = 1024,
        save_every: SaveEvery = 50, bf16: Bf16 = None, name: Name = None,
        beta: Annotated[float, typer.Option(help="How far from the reference the policy may move.")] = 0.1,
        nll_weight: Annotated[float, typer.Option(help="Weight of the NLL term on the chosen side (Llama 3).")] = 0.2,
        seed: Annotated[int, typer.Option(help="Orders the pairs.")] = 0) -> None:
    """DPO on rows {"prompt", "chosen", "rejected"} (TRL's format), as Llama 3: sigmoid loss, an NLL term on the
    chosen response, the chat template's formatting tokens masked out of both sides."""
    settings = _settings("dpo", steps=steps, lora_rank=lora_rank, batch_size=batch_size, micro_batch=micro_batch,
                         lr=lr, max_length=max_length, save_every=save_every, bf16=bf16, beta=beta,
                         nll_weight=nll_weight, seed=seed)
    _run(model, data, out_path, settings, name)


@app.command()
def data(
    store: Annotated[Path, typer.Argument(help="An evaluation store (`ponder eval` with majority or bon).")],
    sft_path: Annotated[Path | None, typer.Option("--sft", help="Write rejection-sampled SFT rows here.")] = None,
    pairs_path: Annotated[Path | None, typer.Option("--pairs", help="Write preference pairs here.")] = None,
    revisions_path: Annotated[Path | None, typer.Option("--revisions", help="Write revision-model SFT rows here: "
                                                        "0-4 wrong attempts, then a right answer.")] = None,
    per_question: Annotated[int, typer.Option(help="At most this many right answers (and pairs) a question.")] = 4,
    hold_out_templates: Annotated[float, typer.Option(help="Leave out the questions of this share of templates "
                                                           "(gsm_symbolic), to judge on unseen ones: `ponder report "
                                                           "--templates unseen`.")] = 0.0,
) -> None:
    """Training sets from search: the right samples of each question (SFT) and right-wrong pairs (DPO)."""
    from ponder.errors import BadParameter
    from ponder.jobs import write_jsonl
    from ponder.train.from_search import from_store

    if sft_path is None and pairs_path is None and revisions_path is None:
        raise BadParameter("say where the data goes: --sft FILE, --pairs FILE, --revisions FILE (any of them)")
    if per_question < 1:
        raise BadParameter("--per-question must be at least 1")
    if not 0 <= hold_out_templates < 1:
        raise BadParameter("--hold-out-templates is a share of the templates, from 0 to below 1")
    made = from_store(store, per_question, hold_out_templates)
    if sft_path:
        write_jsonl(made.sft, sft_path)
    if pairs_path:
        write_jsonl(made.pairs, pairs_path)
    if revisions_path:
        write_jsonl(made.revisions, revisions_path)
    out.print(f"{len(made.sft)} SFT rows, {len(made.pairs)} pairs and {len(made.revisions)} revision rows from "
              f"{made.questions} questions; "
              f"{made.no_right_answer} had no right sample; {made.held_out} left out (evaluation questions, "
              "held-out templates)")


@app.command()
def encoder(
    out_path: Out,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 800,
    batch_size: Annotated[int, typer.Option(help="448-pixel tiles a step.")] = 16,
    save_every: SaveEvery = 20,
    seed: Annotated[int, typer.Option(help="Initialises the weights.")] = 0,
) -> None:
    """The image encoder the NVLM designs share: a small ViT learns to see from scratch on synthetic tiles (where
    each digit and shape is, through a head that is then thrown away)."""
    from ponder.train.encoder import EncoderSettings, train_encoder

    train_encoder(out_path, EncoderSettings(steps=steps, batch_size=batch_size, save_every=save_every, seed=seed),
                  say=out.print)
    out.print(f"the encoder is in {out_path}: `ponder train vision --encoder {out_path} --design d --out DIR`")


@app.command()
def vision(
    out_path: Out,
    encoder_path: Annotated[Path, typer.Option("--encoder", help="The folder of `ponder train encoder`.")],
    design: Annotated[str, typer.Option(help="d: image tokens in the sequence; x: gated cross-attention; h: the "
                                             "thumbnail in the sequence, the tiles through cross-attention.")] = "d",
    tags: Annotated[bool, typer.Option(help="1-D text tile tags (<tile_1> ... <tile_global_thumbnail>).")] = True,
    thumbnail: Annotated[bool, typer.Option(help="A global thumbnail beside the tiles.")] = True,
    base: Annotated[str, typer.Option(help="The decoder (frozen; LoRA in stage 2).")] = "smollm2-135m-instruct",
    stage1_steps: Annotated[int, typer.Option(help="Steps training the connector alone.")] = 150,
    stage2_steps: Annotated[int, typer.Option(help="Steps with LoRA on the decoder as well.")] = 150,
    batch_size: Annotated[int, typer.Option(help="Images a step, half reading and half counting.")] = 8,
    micro_batch: MicroBatch = 4,
    lora_rank: LoraRank = 8,
    save_every: SaveEvery = 10,
    seed: Annotated[int, typer.Option(help="Initialises the connector.")] = 0,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast.")] = True,
) -> None:
    """NVLM-D, -X or -H on the shared encoder, in NVLM's two stages; the folder is then a vision model
    (`ponder generate DIR --image FILE "..."`)."""
    from ponder.train.vision import VisionSettings, train_vision

    settings = VisionSettings(design=design, tags=tags, thumbnail=thumbnail, base=base, encoder=str(encoder_path),
                              stage1_steps=stage1_steps, stage2_steps=stage2_steps, batch_size=batch_size,
                              micro_batch=micro_batch, lora_rank=lora_rank, save_every=save_every, seed=seed,
                              bf16=bf16)
    train_vision(out_path, settings, say=out.print)
