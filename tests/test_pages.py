"""The pages to watch thinking, in a real browser: headless Chromium (Debian's package) driven by playwright.

Skipped where either is missing (`apt-get install chromium`; playwright installs with the test extras). With
PONDER_SCREENSHOTS=1 the tests also save the screenshots shown in docs/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli import ponder
from reference import ponder_model

MODEL = "smollm2-135m-instruct"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS = Path(__file__).parent.parent / "docs"
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium here: apt-get install chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        yield launched
        launched.close()


def screenshot(page: object, name: str) -> None:
    if os.environ.get("PONDER_SCREENSHOTS"):
        page.screenshot(path=str(DOCS / name), full_page=True)  # type: ignore[attr-defined]


def test_a_solve_page_shows_the_vote_the_candidates_and_the_tree_with_scores(browser: object,
                                                                           tmp_path: Path) -> None:
    ponder_model(MODEL)  # skips when not pulled
    page_path = tmp_path / "thinking.html"
    done = ponder("solve", "What is 17 + 25? Add them step by step.", "--model", MODEL, "--strategy", "beam",
                  "--n", "4", "--width", "2", "--verifier", "arithmetic", "--max-tokens", "96", "--answer", "42",
                  "--html", str(page_path))
    assert done.returncode == 0, done.stderr
    html = page_path.read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # opens offline
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(page_path.as_uri())
    nodes = page.locator("details.node")
    assert nodes.count() >= 4  # every step of the tree
    assert page.locator("details.node .score").count() == nodes.count()  # each with its score
    assert page.locator(".bars .bar").count() >= 1 and "answer:" in page.locator(".answer").inner_text()
    first = nodes.first
    assert first.get_attribute("open") is not None
    first.locator("summary").first.click()  # collapses, then expands again
    assert first.get_attribute("open") is None
    first.locator("summary").first.click()
    assert first.get_attribute("open") is not None
    if page.locator("details.node.pruned").count():
        assert "pruned" in page.locator("details.node.pruned summary").first.inner_text()
    screenshot(page, "thinking-page.png")
    page.close()


def test_the_chat_page_of_a_running_server_streams_an_answer_and_shows_the_thinking(browser: object) -> None:
    from servers import serving

    from ponder.engine.backends import open_generator
    from ponder.engine.scheduler import Scheduler
    from ponder.serve.app import create_app

    ponder_model(MODEL)
    scheduler = Scheduler(open_generator(MODEL))
    try:
        with serving(create_app(scheduler, MODEL)) as url:
            page = browser.new_page()  # type: ignore[attr-defined]
            page.goto(url + "/")
            page.fill("#question", "What is 2 + 3?")
            page.select_option("#effort", "none")
            page.click("button[type=submit]")
            page.wait_for_function("document.querySelector('.reply') && "
                                   "document.querySelector('.reply').textContent.length > 3", timeout=60_000)
            page.fill("#question", "What is 17 + 25? Add them step by step.")
            page.select_option("#effort", "low")
            page.select_option("#strategy", "beam")
            page.click("button[type=submit]")
            page.wait_for_selector("details.thinking", timeout=120_000)
            page.click("details.thinking > summary")
            assert page.locator("details.thinking details.node").count() >= 4  # the tree of that request
            assert page.locator("details.thinking .score").count() >= 4
            screenshot(page, "chat-page.png")
            page.close()
    finally:
        scheduler.close()


def test_a_code_candidate_shows_what_its_program_printed_on_each_example(browser: object, tmp_path: Path) -> None:
    from ponder.serve.page import thinking_page
    from ponder.tasks import question_task
    from ponder.verify.code import CodeExecutionVerifier

    prompt = 'def add(a, b):\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    """\n'
    task = question_task(prompt, "code", None)
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    shown = CodeExecutionVerifier().example_results(task, [right, wrong, "I would rather not."])
    assert [[bool(x["passed"]) for x in rows] for rows in shown] == [[True, True], [False, False], [False, False]]
    assert (shown[1][0]["example"], shown[1][0]["want"], shown[1][0]["got"]) == ("add(2, 3)", "5", "-1")
    assert shown[2][0]["got"] == "the program does not load"  # the prose, taken for a program
    result = {"strategy": "bon", "answer": "add", "question": prompt, "spend": {},
              "candidates": [{"text": t, "answer": "add", "score": s, "examples": e}
                             for t, s, e in zip([right, wrong, "I would rather not."], [1.0, 0.0, 0.0], shown)]}
    (tmp_path / "code.html").write_text(thinking_page(result))
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto((tmp_path / "code.html").as_uri())
    assert page.locator("table.examples tr.pass").count() == 2 and page.locator("table.examples tr.fail").count() == 4
    assert "-1" in page.locator("table.examples tr.fail").first.text_content()  # inside a closed candidate
    page.close()
