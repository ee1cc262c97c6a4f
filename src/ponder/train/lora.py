"""LoRA on ponder's decoder through peft, which wraps its nn.Linear layers as they are (no fork of the model).

peft's `inject_adapter_in_model` works on any torch module: the base weights are frozen, each targeted linear
layer gains A and B (B starts at zero, so the untrained adapter is exactly the model). Merged back into the base
weights before saving, the result is an ordinary checkpoint that any loader reads.
"""

from __future__ import annotations

from torch import nn

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
