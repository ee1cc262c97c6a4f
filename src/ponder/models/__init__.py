"""The policy model: the Llama 3 family decoder, its loaders, tokenizer and registry."""

from ponder.models.config import PRESETS, ModelConfig, preset
from ponder.models.kv_cache import DenseKVCache
from ponder.models.loader import LoadedModel, load
from ponder.models.registry import DEFAULT_MODEL, REGISTRY, pull
from ponder.models.tokenizer import Tokenizer
from ponder.models.transformer import Transformer

__all__ = ["DEFAULT_MODEL", "PRESETS", "REGISTRY", "DenseKVCache", "LoadedModel", "ModelConfig", "Tokenizer",
           "Transformer", "load", "preset", "pull"]
