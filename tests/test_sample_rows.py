"""The sampler kernel (csrc/sample_rows.cpp) against `sample` and PyTorch's log-sum-exp."""

from __future__ import annotations

import pytest
import torch

from ponder.engine import cpu_kernels
from ponder.engine.sampling import SamplingParams, sample, sample_with_lse

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="no AVX2/FMA or no compiler for ponder's kernels")

VOCAB = 151_936  # Qwen2.5's


def seeded(n: int, offset: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


@pytest.mark.parametrize("temperature", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("vocab", [VOCAB, 13])  # 13: not a multiple of the kernel's eight lanes
def test_the_kernel_draws_what_sample_draws(temperature: float, vocab: int) -> None:
    logits = torch.randn(32, vocab, generator=torch.Generator().manual_seed(1)) * 4
    params = SamplingParams(temperature=temperature)
    tokens, lse = sample_with_lse(logits, params, seeded(32))
    assert tokens.tolist() == sample(logits, params, seeded(32)).tolist()  # the same uniform number, the same CDF
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1), rtol=0, atol=2e-5)


def test_masked_tokens_are_never_drawn_and_the_rest_as_often_as_their_probability() -> None:
    logits = torch.full((4000, 37), float("-inf"))
    logits[:, [3, 17, 36]] = torch.tensor([0.0, 1.0, -0.5])
    tokens, lse = sample_with_lse(logits, SamplingParams(temperature=1.0), seeded(4000, offset=10))
    assert set(tokens.tolist()) == {3, 17, 36}
    want = torch.tensor([0.0, 1.0, -0.5]).softmax(-1)
    got = torch.tensor([(tokens == t).float().mean() for t in (3, 17, 36)])
    assert (got - want).abs().max() < 0.03  # 4000 draws: a standard error under 0.008
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1))


def test_filters_take_pytorchs_way() -> None:
    logits = torch.randn(8, 500, generator=torch.Generator().manual_seed(2))
    params = SamplingParams(temperature=0.7, top_k=5)
    tokens, _ = sample_with_lse(logits, params, seeded(8))
    assert tokens.tolist() == sample(logits, params, seeded(8)).tolist()
    assert all(t in row.topk(5).indices.tolist() for t, row in zip(tokens.tolist(), logits))
