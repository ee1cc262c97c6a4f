"""LoRA on ponder's decoder through peft, which wraps its nn.Linear layers as they are (no fork of the model).

peft's `inject_adapter_in_model` works on any torch module: the base weights are frozen, each targeted linear
layer gains A and B (B starts at zero, so the untrained adapter is exactly the model). Merged back into the base
weights before saving, the result is an ordinary checkpoint that any loader reads.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ponder.errors import BadParameter

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # every linear layer of attention and the MLP, as QLoRA


def add_lora(model: nn.Module, rank: int, alpha: float | None = None) -> nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=0.0, target_modules=list(TARGETS))
    return inject_adapter_in_model(config, model)


def merge_lora(model: nn.Module) -> nn.Module:
    """The model with each adapter folded into its base weight and the wrapper removed, in place."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    return model


# A LoRA run's trained weights alone, beside the merged model: in a folder of their own, so that no loader takes them
# for a shard of the model (they keep ponder's module names: not a peft folder).
ADAPTER = "adapter/adapter_model.safetensors"


def save_adapter(model: nn.Module, path: Path) -> None:
    """The adapters' A and B (fp32, ponder's module names): with the base model, all it takes to make the
    trained model again (`load_adapter`), at a few percent of its size."""
    from safetensors.torch import save

    from ponder.jobs import write_whole

    write_whole(path, save({k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()
                            if ".lora_" in k}))


def load_adapter(model: nn.Module, path: Path) -> nn.Module:
    """`model` (with `add_lora` of the same rank) given the saved adapters; every one must be there."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    missing = sorted(k for k in model.state_dict() if ".lora_" in k and k not in tensors)
    if missing or not tensors:
        raise BadParameter(f"{path} does not fit this model's adapters ({missing[:1] or 'none saved'}): was it "
                           "trained on another base or rank?")
    model.load_state_dict(tensors, strict=False)
    return model
