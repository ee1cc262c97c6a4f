"""llama.cpp's own C++ tools, built once from the sources that the installed llama-cpp-python vendors.

    .venv/bin/python benchmarks/llama_cpp_tools.py [avx2|native-noamx]   # builds llama-batched-bench (~10 min)
    .venv/bin/python benchmarks/llama_cpp_tools.py rebuild-without-amx   # (make test) see rebuild_without_amx

The reference for engine speed is llama.cpp with no Python between its steps: `llama-batched-bench`. Its
sources come from PyPI (the llama-cpp-python source package of the installed version, which vendors
llama.cpp), so nothing outside the package registries is needed. Built with GGML_NATIVE (this CPU's
instructions, as llama.cpp's own build does by default) under PONDER_HOME/llama.cpp-tools/VERSION/, and on
request for AVX2 alone (GGML_NATIVE off, AVX-512 off) under .../VERSION/avx2/: llama.cpp as it runs on an AVX2-only
machine, to set beside ponder's AVX2 kernels on the same CPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ponder.engine.cpu_kernels import cpu_flags
from ponder.models.registry import ponder_home


def tools_dir() -> Path:
    return ponder_home() / "llama.cpp-tools" / importlib.metadata.version("llama_cpp_python")


# The instruction sets a build may use: "native" (this CPU's, llama.cpp's default), "native-noamx" (this CPU's
# less AMX) or AVX2 alone.
AVX2_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
              "-DGGML_BMI2=ON"]
ISA_FLAGS = {"native": ["-DGGML_NATIVE=ON"],
             "avx2": [*AVX2_FLAGS, "-DGGML_AVX512=OFF", "-DGGML_AVX_VNNI=OFF"]}
# "native-noamx": on a Sapphire Rapids Xeon (AMX) llama-cpp-python 0.3.36's llama.cpp crashes in its AMX matmul
# (ggml_backend_amx_mul_mat, signal 11, though the kernel grants the tile permission), so its best that runs there
# is every vector extension the CPU has except AMX. -march=native would turn AMX back on: the flags are named.
NOAMX_FLAGS = {"avx512f": "GGML_AVX512", "avx512vbmi": "GGML_AVX512_VBMI", "avx512_vnni": "GGML_AVX512_VNNI",
               "avx512_bf16": "GGML_AVX512_BF16", "avx_vnni": "GGML_AVX_VNNI"}


def build_flags(isa: str) -> list[str]:
    if isa != "native-noamx":
        return ISA_FLAGS[isa]
    have = cpu_flags()
    return [*AVX2_FLAGS, *(f"-D{option}={'ON' if flag in have else 'OFF'}" for flag, option in NOAMX_FLAGS.items())]


def quietly(command: list[str]) -> None:
    """Run a build step; its output (thousands of lines of compiler warnings) is shown only if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def batched_bench(isa: str = "native") -> Path:
    """The path of llama-batched-bench built for `isa` (see ISA_FLAGS), built first if it is not there yet."""
    binary = (tools_dir() if isa == "native" else tools_dir() / isa) / "bin" / "llama-batched-bench"
    if binary.exists():
        return binary
    version = importlib.metadata.version("llama_cpp_python")
    work = Path(tempfile.mkdtemp(prefix="llama.cpp-build-"))
    try:
        # The source package alone (its build requirements may come as wheels: with `--no-binary :all:` pip builds
        # hatchling and the rest from source first, for many minutes).
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-binary",
                        "llama-cpp-python", "--no-deps", "--quiet", "-d", str(work)], check=True)
        with tarfile.open(next(work.glob("llama_cpp_python-*.tar.gz"))) as sdist:
            sdist.extractall(work, filter="data")
        source = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = work / "build"
        quietly(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *build_flags(isa),
                 "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DBUILD_SHARED_LIBS=OFF"])
        quietly(["cmake", "--build", str(build), "--target", "llama-batched-bench", "-j", str(os.cpu_count() or 2)])
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(binary.name + ".partial")
        shutil.copy2(build / "bin" / "llama-batched-bench", partial)
        os.replace(partial, binary)  # a build cut short leaves nothing that looks finished
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return binary


def run_batched_bench(model: Path, prompt: int, generate: int, batches: tuple[int, ...], threads: int,
                      shared_prompt: bool = True, isa: str = "native") -> dict[str, float]:
    """llama-batched-bench on `model`: per batch size n, generated tokens/s (all sequences together) as
    `n=N tokens/s`, the prompt's tokens/s as `prefill tokens/s`, and the tool's peak RSS in GB. With `shared_prompt`
    the n sequences share one prompt (-pps), as ponder's samples do."""
    context = max(batches) * (prompt + generate) + prompt
    # The first configuration runs cold (its n = 1 and prefill came out at half speed in some runs): it is run
    # twice and the second counts; prefill is the best over all configurations (the anchor at its best).
    runs = [batches[0], *batches]
    command = [str(batched_bench(isa)), "-m", str(model), "-c", str(context), "-b", "2048", "-ub", "512",
               "-npp", str(prompt), "-ntg", str(generate), "-npl", ",".join(map(str, runs)), "-t", str(threads),
               *(["-pps"] if shared_prompt else [])]
    done = subprocess.run(["/usr/bin/time", "-f", "peak-rss-kb %M", *command], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        if "signal 11" in done.stderr and isa == "native" and "amx_int8" in cpu_flags():
            raise SystemExit("llama-batched-bench crashed (signal 11) in llama.cpp's AMX kernels on this CPU: "
                             "rerun with --isa native-noamx (every vector extension but AMX)")
        raise RuntimeError(f"llama-batched-bench failed: {done.stderr.strip().splitlines()[-3:]}")
    out: dict[str, float] = {}
    # |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0].isdigit():
            n = int(cells[2])
            out[f"n={n} tokens/s"] = float(cells[7])  # the last run of n
            out["prefill tokens/s"] = max(out.get("prefill tokens/s", 0.0), float(cells[5]))
    rss = re.search(r"peak-rss-kb (\d+)", done.stderr)
    out["peak RSS GB"] = int(rss.group(1)) / 1e6 if rss else float("nan")
    return out


def rebuild_without_amx() -> None:
    """llama-cpp-python built again without AMX, if this CPU has AMX and the installed build uses it: its AMX
    matmul crashes (see NOAMX_FLAGS), which takes the llamacpp backend and its tests down with it."""
    spec = importlib.util.find_spec("llama_cpp")
    lib = Path(spec.origin).parent / "lib" / "libggml-cpu.so" if spec and spec.origin else None
    if "amx_int8" not in cpu_flags() or lib is None or not lib.exists():
        return
    code = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    if "tileloadd" not in code:
        return
    version = importlib.metadata.version("llama_cpp_python")
    print(f"llama-cpp-python {version} was built with AMX, whose matmul crashes on this CPU: building it again "
          "without AMX (~10 min)", flush=True)
    # From source and not from pip's cache, which holds the AMX build under the same name.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--force-reinstall",
                    "--no-deps", "--no-binary", "llama-cpp-python", f"llama-cpp-python=={version}"],
                   env=os.environ | {"CMAKE_ARGS": " ".join(build_flags("native-noamx"))}, check=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["rebuild-without-amx"]:
        rebuild_without_amx()
    else:
        print(batched_bench(sys.argv[1] if len(sys.argv) > 1 else "native"))
