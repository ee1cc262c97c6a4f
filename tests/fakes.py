"""Offline stand-ins for what `ponder pull` talks to: wheels for pip, a tiny checkpoint, a fake Hugging Face Hub.

Nothing here replaces ponder's own code: pip really downloads (from a local folder), huggingface_hub really
speaks HTTP (to a local server), and the CLI runs as the installed `ponder` command.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


# --- wheels ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Zeros:
    """A wheel member of `size` zero bytes, written in blocks (it deflates to almost nothing)."""

    size: int


def build_wheel(folder: Path, name: str, version: str, files: Mapping[str, bytes | Zeros]) -> Path:
    """A valid pure-Python wheel `name-version-py3-none-any.whl` holding `files` (path in wheel -> content)."""
    stem = re.sub(r"[-_.]+", "_", name).lower()
    dist_info = f"{stem}-{version}.dist-info"
    path = folder / f"{stem}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        def add(member: str, content: bytes | Zeros) -> None:
            digest, size = hashlib.sha256(), 0
            with wheel.open(member, "w") as sink:
                for block in _blocks(content):
                    sink.write(block)
                    digest.update(block)
                    size += len(block)
            b64 = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={b64},{size}")

        for member, content in files.items():
            add(member, content)
        add(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode())
        add(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: ponder-tests\nRoot-Is-Purelib: true\n"
                                  b"Tag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n")
    return path


def _blocks(content: bytes | Zeros) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield content
        return
    block = bytes(1 << 22)
    for start in range(0, content.size, len(block)):
        yield block[: min(len(block), content.size - start)]


def pip_env(find_links: Path) -> dict[str, str]:
    """Environment variables that make `pip download` look in `find_links` only, ignoring pip's config files."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(find_links), "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


# --- a tiny checkpoint ------------------------------------------------------------------------------


def tiny_checkpoint(folder: Path) -> Path:
    """A random two-layer Llama with a 256-token byte-level BPE tokenizer, as a Hugging Face folder."""
    import torch
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    from ponder.models.config import ModelConfig
    from ponder.models.hf import write_folder
    from ponder.models.tokenizer import Tokenizer
    from ponder.models.transformer import Transformer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 characters that stand for the 256 bytes
    backend = HFTokenizer(models.BPE({c: i for i, c in enumerate(alphabet)}, []))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = Tokenizer(backend, bos_id=None, eos_id=0)

    cfg = ModelConfig(arch="llama", vocab_size=len(alphabet), dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                      ffn_dim=64, max_seq_len=256)
    torch.manual_seed(0)
    tensors = Transformer(cfg).state_dict()
    if cfg.tie_embeddings:
        tensors.pop("head.weight")
    write_folder(folder, cfg, tensors, tokenizer)
    return folder


# --- a fake Hugging Face Hub ------------------------------------------------------------------------


class FakeHub:
    """The few Hub endpoints `snapshot_download` uses, serving local folders as model repositories.

    GET  /api/models/{repo}[/revision/{rev}]    repo info: the commit sha (and the file list, as `siblings`)
    GET  /api/models/{repo}/tree/{rev}          the file list: path, size, oid of each file
    HEAD /{repo}/resolve/{rev}/{file}           X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{file}           the bytes

    Unknown repositories and files get a 404 with the Hub's X-Error-Code header.
    """

    def __init__(self, repos: Mapping[str, Path]):
        self.repos = dict(repos)
        self.requests: list[str] = []  # "METHOD path", in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def commit(repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def files(self, repo: str) -> dict[str, Path]:
        folder = self.repos[repo]
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                    self._repo_info(m[1], body)
                elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
                    self._tree(m[1], body)
                elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    self._file(m[1], m[3], body)
                else:
                    self._send(404, b'{"error": "not found"}', body, {"Content-Type": "application/json"})

            def _repo_info(self, repo: str, body: bool) -> None:
                if repo not in hub.repos:
                    return self._not_found("RepoNotFound", body)
                info = {"id": repo, "modelId": repo, "sha": hub.commit(repo), "private": False,
                        "siblings": [{"rfilename": f} for f in hub.files(repo)]}
                self._json(info, body)

            def _tree(self, repo: str, body: bool) -> None:
                if repo not in hub.repos:
                    return self._not_found("RepoNotFound", body)
                self._json([{"type": "file", "path": f, "size": p.stat().st_size,
                             "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                            for f, p in hub.files(repo).items()], body)

            def _file(self, repo: str, name: str, body: bool) -> None:
                if repo not in hub.repos:
                    return self._not_found("RepoNotFound", body)
                if name not in hub.files(repo):
                    return self._not_found("EntryNotFound", body, {"X-Repo-Commit": hub.commit(repo)})
                data = hub.files(repo)[name].read_bytes()
                self._send(200, data, body, {"Content-Type": "application/octet-stream",
                                             "X-Repo-Commit": hub.commit(repo),
                                             "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})

            def _json(self, obj: object, body: bool) -> None:
                self._send(200, json.dumps(obj).encode(), body, {"Content-Type": "application/json"})

            def _not_found(self, code: str, body: bool, headers: Mapping[str, str] = {}) -> None:  # noqa: B006
                self._send(404, json.dumps({"error": code}).encode(), body,
                           {"Content-Type": "application/json", "X-Error-Code": code, **headers})

            def _send(self, status: int, data: bytes, body: bool, headers: Mapping[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler


def hub_env(hub_url: str, hf_home: Path) -> dict[str, str]:
    """Environment variables that point huggingface_hub at a FakeHub, with its own empty cache and no token."""
    return {"HF_ENDPOINT": hub_url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost"}
