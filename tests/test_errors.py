"""Bad input: each mistake is a typed exception from the library and one clear line from the CLI."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from cli import error_line, ponder
from conftest import TINY
from ponder.engine.sampling import SamplingParams
from ponder.engine.stream import generate_tokens
from ponder.errors import (BadCheckpoint, ContextOverflow, ModelNotPulled, PonderError, UnknownModel,
                           UnsupportedModel)
from ponder.models.loader import load
from tiny_gguf import random_model, write_tiny_gguf

@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PONDER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, random_model(TINY["smollm2-tied"]))
    return path


def cli_error(*args: str, home: Path) -> str:
    return error_line(ponder(*args, home=home))


def test_truncated_gguf(tiny_gguf: Path, home: Path) -> None:
    data = tiny_gguf.read_bytes()
    tiny_gguf.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BadCheckpoint, match="truncated"):
        load(tiny_gguf)
    assert "truncated" in cli_error("generate", str(tiny_gguf), "hi", home=home)


def test_truncated_in_the_header(tiny_gguf: Path, home: Path) -> None:
    tiny_gguf.write_bytes(tiny_gguf.read_bytes()[:200])
    with pytest.raises(BadCheckpoint, match="truncated or corrupt"):
        load(tiny_gguf)


def test_not_a_gguf_file(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("these are not weights\n")
    with pytest.raises(BadCheckpoint, match="not a GGUF file"):
        load(path)
    assert "not a GGUF file" in cli_error("generate", str(path), "hi", home=home)


def test_unknown_architecture(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), arch="gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", gguf.np.zeros((8, 4), dtype=gguf.np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModel, match="architecture 'gpt2' is not supported"):
        load(path)
    assert "architecture 'gpt2'" in cli_error("generate", str(path), "hi", home=home)


def test_prompt_longer_than_the_context(tiny_gguf: Path, home: Path) -> None:
    loaded = load(tiny_gguf)
    prompt = [5] * (loaded.config.max_seq_len - 10)
    with pytest.raises(ContextOverflow, match="context window is 256"):
        next(generate_tokens(loaded.model, prompt, SamplingParams(max_tokens=20)))
    line = cli_error("generate", str(tiny_gguf), "to " * 300, "--raw", "--max-tokens", "8", home=home)
    assert "context window" in line


def test_unknown_model_name(home: Path) -> None:
    with pytest.raises(UnknownModel, match="ponder models"):
        load("gpt-17-ultra")
    assert "unknown model 'gpt-17-ultra'" in cli_error("generate", "gpt-17-ultra", "hi", home=home)


def test_known_model_not_pulled_yet(home: Path) -> None:
    with pytest.raises(ModelNotPulled, match="ponder pull smollm2-135m-instruct"):
        load("smollm2-135m-instruct")
    assert "ponder pull" in cli_error("generate", "smollm2-135m-instruct", "hi", home=home)


def test_a_disk_too_full_for_the_dequantized_checkpoint_is_said_before_writing(tiny_gguf: Path, home: Path,
                                                                                monkeypatch) -> None:  # noqa: ANN001
    import shutil
    from types import SimpleNamespace

    from ponder.models.loader import dequantized

    full = SimpleNamespace(total=100 << 30, used=100 << 30, free=1 << 20)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: full)
    with pytest.raises(PonderError, match=r"needs 0\.\d GB in .* and 0\.0 GB are free: free some space, or set "
                                          "PONDER_HOME"):
        dequantized(tiny_gguf)
    assert not list((home / "dequantized").iterdir())  # nothing half-written


def test_wrong_tensor_shape_names_the_tensor(tiny_gguf: Path, home: Path) -> None:
    from ponder.models.hf import read_folder
    from ponder.models.loader import dequantized
    from ponder.models.weights import build_model

    cfg, tensors = read_folder(dequantized(tiny_gguf))
    tensors["layers.1.mlp.up.weight"] = tensors["layers.1.mlp.up.weight"][:-1]
    with pytest.raises(BadCheckpoint, match="'layers.1.mlp.up.weight' has shape"):
        build_model(cfg, tensors, "test")
    del tensors["layers.1.mlp.up.weight"]
    with pytest.raises(BadCheckpoint, match="'layers.1.mlp.up.weight' is missing"):
        build_model(cfg, tensors, "test")


@pytest.mark.parametrize("option, value, says", [("--temperature", "-1", "temperature"), ("--top-p", "0", "top-p"),
                                                 ("--max-tokens", "0", "max tokens")])
def test_sampling_settings_out_of_range(option: str, value: str, says: str, tiny_gguf: Path, home: Path) -> None:
    assert says in cli_error("generate", str(tiny_gguf), "hi", option, value, home=home)


@pytest.mark.parametrize("args, says", [(["eval", "--task", "chain_sum", "--out", "x.db", "extra"], "unexpected extra"),
                                        (["solve"], "Missing argument"),
                                        (["eval", "--task", "chain_sum", "--budgets"], "requires an argument")])
def test_usage_mistakes_get_clicks_short_message_not_a_traceback(args: list[str], says: str) -> None:
    done = ponder(*args)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) <= 4  # usage, a hint, the error
