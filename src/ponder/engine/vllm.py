"""The vLLM backend (offline `LLM` API) for GPU machines.

vLLM batches everything handed to one `generate` call and caches shared prefixes itself (automatic
prefix caching), so `extend` passes all sequences at once as token-id prompts. Per-sequence seeds
keep samples independent of the batch, as on the other backends. A checkpoint folder made by ponder
(the dequantized cache of a GGUF file) loads here unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ponder.engine.protocol import ModelInfo, SamplesByExtending, Sequence, Usage, check_fits, likeliest
from ponder.engine.sampling import SamplingParams, find_stop
from ponder.errors import PonderError
from ponder.models.hf import read_config
from ponder.models.loader import dequantized
from ponder.models.registry import resolve
from ponder.models.tokenizer import Tokenizer


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise PonderError("the vLLM backend needs vllm on a GPU machine: pip install vllm") from None
    return vllm


def open_vllm(model: str, **llm_args: Any) -> VLLMEngine:
    """vLLM on a model ponder knows: a checkpoint folder as it is, a GGUF file by its dequantized folder."""
    _import_vllm()  # before dequantizing anything
    path = resolve(model)
    folder = path if path.is_dir() else dequantized(path)
    cfg = read_config(folder)
    tokenizer = Tokenizer.from_folder(folder)
    return VLLMEngine(folder, tokenizer, ModelInfo(model, cfg.n_params, cfg.max_seq_len, tokenizer.stop_ids),
                      **llm_args)


class VLLMEngine(SamplesByExtending):
    def __init__(self, folder: str | Path, tokenizer: Tokenizer, info: ModelInfo, **llm_args: Any):
        vllm = self.vllm = _import_vllm()
        self.llm = vllm.LLM(model=str(folder), enable_prefix_caching=True, **llm_args)
        self.tokenizer, self.info = tokenizer, info
        self.usage = Usage()

    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        todo = [s for s in sequences if not s.done]
        for seq in todo:
            check_fits(self.info, seq, params)
        requests = [{"prompt_token_ids": list(s.all_tokens)} for s in todo]
        settings = [self.vllm.SamplingParams(
            temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or -1, min_p=params.min_p,
            max_tokens=params.max_tokens, seed=s.seed_for(params.seed), stop=list(params.stop),
            include_stop_str_in_output=True, logprobs=params.top_logprobs) for s in todo]
        outputs = iter(self.llm.generate(requests, settings, use_tqdm=False))
        return [s if s.done else self._grown(s, next(outputs), params) for s in sequences]

    def _grown(self, seq: Sequence, output: Any, params: SamplingParams) -> Sequence:
        completion = output.outputs[0]
        ids = list(completion.token_ids)
        steps = completion.logprobs or []
        logprobs = [float(step[token].logprob) for step, token in zip(steps, ids)]
        top = [likeliest(((i, float(p.logprob)) for i, p in step.items()), params.top_logprobs)
               for step in steps] if params.top_logprobs else []
        cached = int(getattr(output, "num_cached_tokens", 0) or 0)
        self.usage.prompt_tokens_computed += len(seq.all_tokens) - cached
        self.usage.prompt_tokens_cached += cached
        self.usage.generated_tokens += len(ids)
        done = bool(ids) and ids[-1] in self.info.stop_ids
        if done:
            ids, logprobs, top = ids[:-1], logprobs[:-1], top[:-1]
        tokens = seq.tokens + tuple(ids)
        text = self.tokenizer.decode(tokens)
        stop = find_stop(text, params.stop, len(seq.text))
        return replace(seq, tokens=tokens, logprobs=seq.logprobs + tuple(logprobs), text=text, stop=stop,
                       top_logprobs=seq.top_logprobs + tuple(top),
                       done=done, finish_reason="stop" if stop or done else "length")
