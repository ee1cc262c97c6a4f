"""The `ponder` command: pull models, list them, generate and chat in the terminal."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from ponder import demo as demo_defaults
from ponder.errors import BadImage, BadParameter, PonderError
from ponder.eval import cli as eval_commands
from ponder.journey.cli import app as journey_app
from ponder.prm.cli import app as prm_app
from ponder.train.cli import app as train_app

if TYPE_CHECKING:  # the heavy imports (torch) wait until a command needs them
    from rich.tree import Tree

    from ponder.engine.sampling import SamplingParams
    from ponder.models.loader import LoadedModel

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ponder: make small open-weight language models think harder.")
app.add_typer(prm_app, name="prm")
app.add_typer(train_app, name="train")
app.add_typer(journey_app, name="journey")
app.command("eval")(eval_commands.evaluate)
app.command("report")(eval_commands.report)
app.command("allocate")(eval_commands.allocate)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

Temperature = Annotated[float, typer.Option(help="0 decodes greedily.")]
TopP = Annotated[float, typer.Option(help="Nucleus sampling mass.")]
MaxTokens = Annotated[int, typer.Option(help="Most tokens to generate.")]
Seed = Annotated[int | None, typer.Option(help="Same seed, same tokens.")]


@app.callback()
def main(debug: Annotated[bool, typer.Option(help="Show tracebacks and debug logs.")] = False) -> None:
    # ponder's own progress at INFO; other libraries (httpx, huggingface_hub) only when they warn.
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, show_time=False)])
    logging.getLogger("ponder").setLevel(logging.DEBUG if debug else logging.INFO)


@app.command()
def models() -> None:
    """Known models, whether they are pulled, their size and where they live."""
    from ponder.models.config import preset
    from ponder.models.hf import read_config
    from ponder.models.registry import REGISTRY, model_dir, ponder_home, registered
    from ponder.vision.checkpoint import SHIPPED, is_vision_folder, shipped_folder

    table = Table(caption=f"pulled models live in {ponder_home() / 'models'}")
    table.add_column("name", no_wrap=True)
    for column in ("architecture", "parameters", "file size", "pulled"):
        table.add_column(column)
    for name, source in REGISTRY.items():
        cfg = preset(source.preset)
        table.add_row(name, cfg.arch, f"{cfg.n_params / 1e6:,.0f}M", f"{source.size / 1e6:,.0f} MB",
                      "yes" if model_dir(name).exists() else "no")
    for name, folder in registered().items():  # trained with `ponder train --name`
        cfg = read_config(folder)
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        table.add_row(name, cfg.arch, f"{cfg.n_params / 1e6:,.0f}M", f"{size / 1e6:,.0f} MB", f"trained: {folder}")
    for name in SHIPPED:  # vision models: what was trained ships in the package, the base decoder is pulled
        folder = shipped_folder(name)
        trained = is_vision_folder(folder)
        size = (folder / "vision.safetensors").stat().st_size if trained else 0
        table.add_row(name, f"NVLM-{name.split('-')[1].upper()} on smollm2-135m-instruct", "",
                      f"{size / 1e6:,.0f} MB" if trained else "", "ships trained" if trained else "not trained yet")
    out.print(table)


@app.command()
def pull(name: Annotated[str, typer.Argument(help="A registry name, or hf:ORG/REPO[/FILE.gguf].")]) -> None:
    """Fetch a model into PONDER_HOME (verified, atomic)."""
    from ponder.models.registry import pull as pull_model

    with err.status(f"pulling {name}"):
        folder = pull_model(name)
    out.print(f"{name} is in {folder}")


@app.command()
def generate(
    model: Annotated[str, typer.Argument(help="Model name, hf:ORG/REPO, .gguf file or checkpoint folder.")],
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    raw: Annotated[bool, typer.Option(help="Send the prompt as it is, without the chat template.")] = False,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    temperature: Temperature = 0.0, top_p: TopP = 1.0, max_tokens: MaxTokens = 256, seed: Seed = None,
    image: Annotated[Path | None, typer.Option(help="An image to ask about (a vision model: nvlm-d-smollm2, "
                                                    "nvlm-x-smollm2, nvlm-h-smollm2).")] = None,
) -> None:
    """Generate a completion; tokens stream to the terminal. With --image, a vision model answers about it."""
    from ponder.engine.sampling import SamplingParams
    from ponder.vision.checkpoint import vision_folder

    params = SamplingParams(temperature, top_p, 0, max_tokens, seed)  # checked before the slow load
    if (folder := vision_folder(model)) is not None:
        _generate_with_eyes(folder, prompt, image, params)
        return
    if image is not None:
        raise BadImage(f"{model} is a text-only model: ask a vision model about images (nvlm-d-smollm2, "
                       "nvlm-x-smollm2, nvlm-h-smollm2; `ponder models`)")
    loaded = _load(model)
    tok = loaded.tokenizer
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    ids = tok.encode(prompt) if raw else tok.encode_chat(messages)
    _stream(loaded, ids, params)


@app.command()
def chat(
    model: Annotated[str, typer.Argument(help="Model name, hf:ORG/REPO, .gguf file or checkpoint folder.")],
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    temperature: Temperature = 0.7, top_p: TopP = 0.9, max_tokens: MaxTokens = 512, seed: Seed = None,
) -> None:
    """A multi-turn chat in the terminal; an empty line or Ctrl-D ends it."""
    from ponder.engine.sampling import SamplingParams

    params = SamplingParams(temperature, top_p, 0, max_tokens, seed)
    loaded = _load(model)
    messages = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        messages.append({"role": "user", "content": line})
        out.print("ponder> ", end="")
        reply = _stream(loaded, loaded.tokenizer.encode_chat(messages), params)
        messages.append({"role": "assistant", "content": reply})


@app.command()
def solve(
    question: Annotated[str, typer.Argument(help="The question to think hard about.")],
    model: Annotated[str, typer.Option(help="Model name, hf:ORG/REPO, .gguf file or checkpoint folder.")] = "",
    strategy: Annotated[str, typer.Option(help="greedy, majority, bon, weighted_bon, beam, lookahead, dvts, "
                                               "revisions, confidence, auto.")] = "majority",
    n: Annotated[int, typer.Option("--n", "--budget", help="Samples, beams or attempts (auto: its budget in "
                                                           "samples).")] = 8,
    width: Annotated[int | None, typer.Option(help="beam, lookahead, dvts: children per kept beam "
                                                    "(default 4; n must be a multiple).")] = None,
    verifier: Annotated[str | None, typer.Option(help="checker, arithmetic, generative, generative-outcome, "
                                                      "code, prm, orm (the shipped heads) or prm:PATH; needed by "
                                                      "bon, beam, lookahead, dvts.")] = None,
    answer: Annotated[str | None, typer.Option(help="The right answer, if you know it: reports whether "
                                                    "ponder got it.")] = None,
    backend: Annotated[str, typer.Option(help="native, native-gguf, native-fp32, llamacpp or vllm (a "
                                              "GPU).")] = "native",
    temperature: Temperature = 0.4, max_tokens: MaxTokens = 512, seed: Seed = 0,
    budget_tokens: Annotated[int | None, typer.Option(help="Stop after this many tokens in all.")] = None,
    policy: Annotated[str | None, typer.Option(help="auto: the allocation policy (from `ponder allocate`; default: "
                                                    "the one shipped for the model).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    tree: Annotated[bool, typer.Option(help="Print the search tree (beam, lookahead, dvts).")] = False,
    html_path: Annotated[Path | None, typer.Option("--html", help="Also write the search as a page to open in a "
                                                                  "browser (offline): the vote, every candidate, "
                                                                  "the tree with its scores.")] = None,
    kind: Annotated[str, typer.Option(help="math (a word problem), code (a Python function signature with a "
                                           "docstring: the answer is the whole function) or auto (code when "
                                           "the question is such a function).")] = "auto",
    answer_format: Annotated[str, typer.Option("--format", help="Word problems: cot (a chain of thought), "
                                                                "program (a Python program, run in the sandbox; "
                                                                "its printed result is the answer) or mixed (both "
                                                                "in turn, voted on together).")] = "cot",
) -> None:
    """Answer a question with test-time compute: a strategy, a verifier and a budget."""
    import json

    from ponder.budget import Budget
    from ponder.engine.backends import open_generator
    from ponder.models.registry import DEFAULT_MODEL
    from ponder.search import make_strategy
    from ponder.search import solve as run_search
    from ponder.tasks import question_task
    from ponder.tasks.program import with_format
    from ponder.verify import check_verifier_name

    settings = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    if width is not None:
        settings["width"] = width
    if strategy == "auto":  # a missing or unreadable policy is said before the model loads
        from ponder.search.auto import shipped_policy

        settings["policy"] = policy or shipped_policy(model or DEFAULT_MODEL)
    make_strategy(strategy, n, **settings)  # bad settings fail before the slow load
    if verifier is not None:
        check_verifier_name(verifier)
    budget = Budget(tokens=budget_tokens)
    task = with_format(question_task(question, kind, answer), answer_format)
    with err.status(f"loading {model or DEFAULT_MODEL}"):
        generator = open_generator(model or DEFAULT_MODEL, backend)
    with err.status(f"{strategy}, n = {n}: thinking") as status:
        result = run_search(generator, task, strategy, n, verifier, budget,
                            progress=lambda message: status.update(f"{strategy}, n = {n}: {message}"), **settings)
    if html_path is not None:
        from ponder.jobs import write_whole
        from ponder.serve.page import thinking_page

        page = result.to_dict() | {"question": question, "reference": answer,
                                   "correct": None if answer is None else task.check(result.answer)}
        if task.metadata.get("entry_point"):  # a code task: each program's results on the prompt's examples
            from ponder.verify.code import CodeExecutionVerifier

            shown = CodeExecutionVerifier().example_results(task, [c.text for c in result.candidates])
            for candidate, examples in zip(page["candidates"], shown):
                candidate["examples"] = examples
        write_whole(html_path, thinking_page(page))
        err.print(f"the thinking: {html_path}")
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    if tree and result.tree:
        out.print(_render_tree(result.tree))
    table = Table(title=f"{len(result.candidates)} candidates")
    for column in ("answer", "score", "tokens", "ending"):
        table.add_column(column)
    for c in result.candidates[:16]:
        ending = c.text.strip().splitlines()[-1][:70] if c.text.strip() else ""
        if c.reason:  # a program that failed: how, rather than its closing fence
            ending = f"no answer: {c.reason}"[:70]
        first, *rest = str(c.answer).strip().splitlines() or [""]
        shown = first[:60] + (" ..." if rest else "")  # a program: its first line here, whole below
        table.add_row(escape(shown), f"{c.score:.2f}", str(c.tokens), escape(ending))
    out.print(table)
    spend = result.spend
    out.print(f"spent {spend.generated_tokens} generated + {spend.prompt_tokens_computed} prompt "
              f"({spend.prompt_tokens_cached} cached) + {spend.verifier_tokens} verifier tokens, "
              f"{spend.flops / 1e12:.2f} TFLOPs, {spend.seconds:.1f} s")
    verdict = "" if answer is None else ("  (right)" if task.check(result.answer) else f"  (wrong: {answer})")
    if result.answer and "\n" in result.answer.strip():  # a program
        out.print(f"[bold]answer:[/bold]{verdict}")
        out.print(result.answer, markup=False)
    else:
        out.print(f"[bold]answer: {escape(str(result.answer))}[/bold]{verdict}")


@app.command()
def demo(
    question: Annotated[str, typer.Argument(help="A word problem.")] = demo_defaults.QUESTION,
    answer: Annotated[str | None, typer.Option(help="Its right answer (the default question's is 28).")] = None,
    model: Annotated[str, typer.Option(help="Model name, .gguf file or checkpoint folder.")] = "",
    seed: Seed = 0,
) -> None:
    """One question answered with one sample and by thinking harder, side by side, with what each measured."""
    from ponder.demo import DEFAULT_THINKING, ONE_SAMPLE, attempt, measured_lines
    from ponder.engine.backends import open_generator
    from ponder.models.registry import DEFAULT_MODEL

    if answer is None and question == demo_defaults.QUESTION:
        answer = demo_defaults.ANSWER
    name = model or DEFAULT_MODEL
    out.print(f"[bold]question:[/bold] {escape(question)}")
    with err.status(f"loading {name}"):
        generator = open_generator(name)
    ways = [("one sample (greedy, chain of thought)", ONE_SAMPLE),
            (f"thinking harder ({DEFAULT_THINKING['strategy']} of {DEFAULT_THINKING['n']} "
             f"{DEFAULT_THINKING['format']}s, run in a sandbox)", DEFAULT_THINKING)]
    attempts = []
    for label, way in ways:
        with err.status(f"{label}: thinking"):
            attempts.append(attempt(generator, question, answer, label, way, seed or 0))
    table = Table()
    for column in ("", "answer", "right", "seconds", "TFLOPs", "tokens"):
        table.add_column(column)
    for a in attempts:
        right = "" if a.right is None else ("[green]yes[/green]" if a.right else "[red]no[/red]")
        table.add_row(escape(a.label), escape(str(a.answer)), right, f"{a.seconds:.1f}", f"{a.tflops:.2f}",
                      str(a.tokens))
    out.print(table)
    lines = measured_lines(name)
    out.print("[bold]measured on held-out questions[/bold] (one question proves nothing):" if lines else
              f"not measured for {name} yet: see `benchmarks/measured.py`")
    for line in lines:
        out.print(f"  {escape(line)}")


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="The model to serve.")] = "qwen2.5-coder-0.5b-instruct",
    host: Annotated[str, typer.Option(help="Where to listen (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: int = 8000,
    api_key: Annotated[str | None, typer.Option(envvar="PONDER_API_KEY", help="Require this bearer key.")] = None,
    max_queue: Annotated[int, typer.Option(help="Requests in flight before 429.")] = 64,
    backend: Annotated[str, typer.Option(help="native, native-gguf or native-fp32.")] = "native",
    max_tokens: Annotated[int, typer.Option(help="The most tokens one request may ask for.")] = 4096,
    max_n: Annotated[int, typer.Option(help="The most samples (n) one request may ask for.")] = 16,
    allow_code: Annotated[bool, typer.Option(help="Let requests use the code-execution verifier.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before it is cancelled (504).")] = 300.0,
    policy: Annotated[str | None, typer.Option(help="auto: the allocation policy (from `ponder allocate`).")] = None,
) -> None:
    """An OpenAI-compatible server: /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics."""
    from pathlib import Path

    from ponder.search.auto import Policy
    from ponder.serve.app import Limits
    from ponder.serve.app import serve as run_server

    limits = Limits(max_tokens=max_tokens, n=max_n, code_verifier=allow_code)
    run_server(model, host, port, api_key, max_queue, backend, limits, timeout,
               Policy.load(Path(policy)) if policy else None, announce=out.print)


def _render_tree(nodes: list) -> Tree:
    from rich.text import Text
    from rich.tree import Tree

    root = Tree("question")
    branches = {}
    for node in nodes:
        label = Text(f"{node.text.strip()[:70]}  ({node.score or 0:.2f})",  # Text: no markup to escape
                     style={"pruned": "dim", "finished": "bold green"}.get(node.state, ""))
        branches[node.id] = (branches[node.parent] if node.parent is not None else root).add(label)
    return root


def _generate_with_eyes(folder: Path, prompt: str, image: Path | None, params: SamplingParams) -> None:
    from ponder.vision.checkpoint import load_vision
    from ponder.vision.tiling import open_image

    if params.temperature:
        raise BadParameter("vision models decode greedily here: leave --temperature at 0")
    picture = open_image(image) if image is not None else None  # a bad image fails before the slow load
    with err.status(f"loading {folder.name}"):
        model = load_vision(folder)
    answer = model.generate(picture, prompt, params.max_tokens)
    out.print(answer.text)
    err.print(f"[dim]{answer.image_tokens} image tokens of {answer.prompt_tokens} in the sequence, "
              f"{answer.new_tokens} new, {answer.seconds:.1f} s[/dim]")


def _load(spec: str) -> LoadedModel:
    from ponder.models.loader import load

    with err.status(f"loading {spec}"):
        return load(spec)


def _stream(loaded: LoadedModel, ids: list[int], params: SamplingParams) -> str:
    from ponder.engine.stream import generate_tokens

    tok, pieces = loaded.tokenizer, []
    for piece in tok.stream(generate_tokens(loaded.model, ids, params, tok.stop_ids)):
        pieces.append(piece)
        out.print(piece, end="", markup=False)
        out.file.flush()
    out.print()
    return "".join(pieces)


def run() -> None:
    """Console entry point: a PonderError is one red line and exit status 1, unless --debug."""
    try:
        app(standalone_mode=False)
    except PonderError as e:
        if "--debug" in sys.argv:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # usage errors: click's, or those of the copy of click that newer typer vendors
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(e.exit_code)
        raise
