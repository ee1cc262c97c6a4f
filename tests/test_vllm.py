"""The vLLM backend runs where vLLM and a GPU are at hand; everywhere else it is skipped, with the reason."""

from __future__ import annotations

import pytest

from ponder.engine.sampling import SamplingParams


def test_vllm_backend_samples_and_extends() -> None:
    vllm = pytest.importorskip("vllm", reason="vLLM is not installed: the vLLM backend needs a GPU machine")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU on this machine: the vLLM backend is tested on a GPU")
    from ponder.engine.protocol import ModelInfo, Sequence
    from ponder.engine.vllm import VLLMEngine
    from ponder.models.loader import dequantized
    from reference import ponder_model

    loaded = ponder_model("smollm2-135m-instruct")
    info = ModelInfo("vllm", loaded.config.n_params, 2048, loaded.tokenizer.stop_ids)
    engine = VLLMEngine(dequantized(loaded.path), loaded.tokenizer, info, max_model_len=2048, dtype="float32")
    prompt = loaded.tokenizer.encode_chat([{"role": "user", "content": "List three fruits, one per line."}])
    [group] = engine.sample([prompt], 4, SamplingParams(temperature=0.8, max_tokens=24, seed=0))
    assert len(group) == 4 and all(s.tokens and len(s.logprobs) == len(s.tokens) for s in group)
    [step] = engine.extend([Sequence(tuple(prompt))], SamplingParams(max_tokens=30, stop=("\n",)))
    assert step.stop == "\n" or step.done
    assert vllm.__version__


def test_without_vllm_the_backend_is_refused_with_what_to_install() -> None:
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here: the test above runs it")
    except ImportError:
        pass
    from ponder.engine.backends import open_generator
    from ponder.errors import PonderError

    with pytest.raises(PonderError, match="pip install vllm"):
        open_generator("qwen2.5-coder-0.5b-instruct", "vllm")
