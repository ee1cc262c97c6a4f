"""ponder's server, spoken to with the official `openai` client, as users' tools would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from reference import ponder_model
from servers import free_port, serving

from ponder.engine.backends import open_generator
from ponder.engine.scheduler import Scheduler
from ponder.serve.app import create_app

openai = pytest.importorskip("openai")
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def scheduler() -> Iterator[Scheduler]:
    ponder_model(MODEL)
    shared = Scheduler(open_generator(MODEL))
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def server(scheduler: Scheduler) -> Iterator[str]:
    with serving(create_app(scheduler, MODEL, max_queue=8)) as url:
        yield url


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def test_chat_completion_with_n_seed_and_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                           max_tokens=12, n=2, temperature=0.8, seed=1)
    assert len(reply.choices) == 2 and all(c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0
    again = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                           max_tokens=12, n=2, temperature=0.8, seed=1)
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]


def test_completion_stops_at_a_stop_string_and_leaves_it_out(client: openai.OpenAI) -> None:
    free = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0)
    text = free.choices[0].text
    assert text
    stop = text.strip()[:2] if len(text.strip()) > 2 else text.strip()
    cut = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0, stop=[stop])
    assert stop not in cut.choices[0].text and text.startswith(cut.choices[0].text)


def test_streaming_gives_the_same_text_as_not_streaming(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0)
    pieces = [chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=16, temperature=0, stream=True) if chunk.choices]
    assert "".join(pieces) == whole.choices[0].message.content and len(pieces) > 2


def test_a_think_harder_request_reports_the_searchs_spend(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                           max_tokens=24, extra_body={"ponder": {"strategy": "majority", "n": 3,
                                                                                 "return_candidates": True}})
    extra = reply.model_extra["ponder"]
    assert extra["strategy"] == "majority" and len(extra["candidates"]) == 3
    assert reply.usage.model_extra["flops"] > 0 and reply.usage.completion_tokens >= 3


def test_log_probabilities_come_back_in_both_apis_shapes(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                          max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    content = chat.choices[0].logprobs.content
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    for t in content:  # greedy: each chosen token is the likeliest of its top 3
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
        assert abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4 and t.logprob <= 0
    text = client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0, logprobs=2,
                                     extra_body={"return_tokens_as_token_ids": True})
    logprobs = text.choices[0].logprobs
    ids = [int(t.removeprefix("token_id:")) for t in logprobs.tokens]
    assert ponder_model(MODEL).tokenizer.decode(ids) == text.choices[0].text
    assert len(logprobs.token_logprobs) == len(ids) == len(logprobs.top_logprobs) == len(logprobs.text_offset)
    assert all(len(top) == 2 for top in logprobs.top_logprobs)


def test_a_request_over_its_time_is_cancelled_and_answered_504(scheduler: Scheduler) -> None:
    with serving(create_app(scheduler, MODEL, timeout=0.5)) as url:
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": MODEL, "messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 2000})
    assert reply.status_code == 504 and reply.json()["error"]["type"] == "timeout"
    deadline = time.monotonic() + 20
    while scheduler.load and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scheduler.load == 0


def test_program_answers_run_only_where_the_operator_allows_code(scheduler: Scheduler) -> None:
    from fastapi.testclient import TestClient

    from ponder.serve.app import Limits

    body = {"model": MODEL, "messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 48,
            "ponder": {"strategy": "majority", "n": 2, "format": "program", "return_candidates": True}}
    refused = TestClient(create_app(scheduler, MODEL)).post("/v1/chat/completions", json=body)
    assert refused.status_code == 400 and "--allow-code" in refused.json()["error"]["message"]
    allowed = TestClient(create_app(scheduler, MODEL, limits=Limits(code_verifier=True)))
    reply = allowed.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200  # whatever the small model writes, a program that fails is no answer, no error
    assert len(reply.json()["ponder"]["candidates"]) == 2


def test_auto_thinks_as_the_servers_policy_allocates(scheduler: Scheduler) -> None:
    from fastapi.testclient import TestClient

    from ponder.search.auto import Choice, Policy

    # Every prediction lands in bin 1 (threshold below any score), whose choice at n = 4 is majority of 3.
    policy = Policy(MODEL, "arithmetic", 2, [-1.0], 1.0, {1: {4: Choice("majority", 3, 0.5, 1.0)},
                                                          2: {4: Choice("bon", 4, 0.5, 1.0)}})
    body = {"model": MODEL, "messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 16,
            "ponder": {"strategy": "auto", "n": 4, "return_candidates": True}}
    without = TestClient(create_app(scheduler, MODEL)).post("/v1/chat/completions", json=body)
    assert without.status_code == 400 and "--policy" in without.json()["error"]["message"]
    served = TestClient(create_app(scheduler, MODEL, policy=policy))
    reply = served.post("/v1/chat/completions", json=body).json()
    assert reply["ponder"]["strategy"] == "auto" and len(reply["ponder"]["candidates"]) == 3
    assert reply["ponder"]["settings"]["bin"] == 1 and reply["ponder"]["settings"]["choice"]["strategy"] == "majority"
    assert reply["usage"]["flops"] > 0
    effort = served.post("/v1/chat/completions", json={k: v for k, v in body.items() if k != "ponder"}
                         | {"reasoning_effort": "low"}).json()
    assert effort["ponder"]["strategy"] == "auto" and effort["ponder"]["settings"]["n"] == 4


def test_errors_come_back_in_openais_shape(client: openai.OpenAI, server: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert bad.value.body["param"] == "temperature" and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"ponder": {"strategy": "telepathy"}})
    assert [m.id for m in client.models.list()] == [MODEL]
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    assert "ponder_requests_total" in httpx.get(f"{server}/metrics").text


def test_a_full_queue_answers_429_with_retry_after(server: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to fifty."}], "max_tokens": 48}
    statuses: list[tuple[int, str | None]] = []

    def ask() -> None:
        reply = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=120)
        statuses.append((reply.status_code, reply.headers.get("retry-after")))

    threads = [threading.Thread(target=ask) for _ in range(14)]  # the queue holds 8
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {s for s, _ in statuses} <= {200, 429} and (429, "1") in statuses and (200, None) in statuses


def test_an_api_key_is_required_when_set(scheduler: Scheduler) -> None:
    from fastapi.testclient import TestClient

    guarded = TestClient(create_app(scheduler, MODEL, api_key="sesame"))
    assert guarded.get("/v1/models").status_code == 401
    assert guarded.get("/v1/models").json()["error"]["type"] == "authentication_error"
    assert guarded.get("/v1/models", headers={"Authorization": "Bearer sesame"}).status_code == 200
    assert guarded.get("/health").status_code == 200  # for load balancers, no key


def test_a_client_that_goes_away_has_its_work_cancelled(server: str, scheduler: Scheduler) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 2000,
            "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as reply:
        for _ in zip(range(3), reply.iter_lines()):
            pass  # a few tokens arrive, then the client hangs up
    deadline = time.monotonic() + 20
    while scheduler.load and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scheduler.load == 0  # cancelled long before 2000 tokens


def test_generated_requests_never_get_a_server_error(scheduler: Scheduler) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    from ponder.serve.app import Limits

    app = create_app(scheduler, MODEL, limits=Limits(max_tokens=8, n=2, think_n=2))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case) -> None:
            reply = case.call()
            if reply.status_code >= 500:
                failures.append((case.method, case.path, case.body, reply.status_code, reply.text[:200]))

        check()
    assert not failures, failures


def test_ponder_serve_says_where_it_listens_serves_there_and_finishes_work_when_stopped() -> None:
    import signal
    import subprocess

    from cli import PONDER

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(PONDER), "serve", MODEL, "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert f"{url}/v1" in server.stdout.readline()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == [MODEL]
        replies: list[httpx.Response] = []
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 64, "temperature": 0}
        asking = threading.Thread(target=lambda: replies.append(httpx.post(f"{url}/v1/completions", json=body,
                                                                           timeout=60)))
        asking.start()
        while httpx.get(f"{url}/health").json()["queue"] == 0 and asking.is_alive():
            time.sleep(0.01)
        server.send_signal(signal.SIGINT)  # Ctrl-C while the request is in flight: it is finished, then we exit
        asking.join(60)
        assert replies[0].status_code == 200 and replies[0].json()["usage"]["completion_tokens"] == 64
        assert server.wait(30) == 0
    finally:
        server.kill()
        server.wait(30)


def test_the_default_model_is_served_with_its_shipped_policy_and_learned_verifier() -> None:
    from fastapi.testclient import TestClient

    from ponder.models.registry import DEFAULT_MODEL
    from ponder.search.auto import shipped_policy

    ponder_model(DEFAULT_MODEL)
    policy = shipped_policy(DEFAULT_MODEL)  # what `ponder serve` loads when no --policy is given
    scheduler = Scheduler(open_generator(DEFAULT_MODEL))
    try:
        with TestClient(create_app(scheduler, DEFAULT_MODEL, policy=policy)) as served:
            reply = served.post("/v1/chat/completions", json={
                "model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "What is 2 + 3?"}],
                "max_tokens": 48, "reasoning_effort": "low"}).json()
    finally:
        scheduler.close()
    settings = reply["ponder"]["settings"]
    assert reply["ponder"]["strategy"] == "auto" and settings["n"] == 4, reply
    assert settings["choice"]["strategy"] == policy.table[settings["bin"]][4].strategy
    assert reply["choices"][0]["message"]["content"] and reply["usage"]["flops"] > 0


def test_an_image_sent_to_a_text_model_is_refused_with_the_way_out(scheduler: Scheduler) -> None:
    from fastapi.testclient import TestClient

    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": parts}], "max_tokens": 4}
    refused = TestClient(create_app(scheduler, MODEL)).post("/v1/chat/completions", json=body)
    assert refused.status_code == 400 and "text-only model" in refused.json()["error"]["message"]
    text_parts = {"model": MODEL, "messages": [{"role": "user", "content": parts[:1]}], "max_tokens": 2}
    assert TestClient(create_app(scheduler, MODEL)).post("/v1/chat/completions", json=text_parts).status_code == 200
