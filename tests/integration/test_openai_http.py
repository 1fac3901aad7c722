"""tessera serve's HTTP side through the official `openai` Python client (completions,
chat, streaming, logprobs, errors, models) and its /metrics through prometheus_client's
parser."""

import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "What is the capital of France? One word."}]


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key="unused",
                       max_retries=0, timeout=120) as c:
        yield c


def test_completion(client):
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=12, temperature=0)
    assert r.object == "text_completion"
    assert "Paris" in r.choices[0].text
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_chat_equals_whole_chat(client):
    whole = client.chat.completions.create(model="default", messages=CHAT, max_tokens=16,
                                           temperature=0)
    text = whole.choices[0].message.content
    assert whole.choices[0].message.role == "assistant"
    assert text
    stream = client.chat.completions.create(model="default", messages=CHAT, max_tokens=16,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == text
    assert len(pieces) > 1
    assert finish == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_chat_logprobs_are_greedy(client):
    r = client.chat.completions.create(model="default", messages=CHAT, max_tokens=4,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for token in content:
        assert len(token.top_logprobs) == 3
        best = max(alt.logprob for alt in token.top_logprobs)
        assert token.logprob == pytest.approx(best, abs=1e-5)  # greedy takes the best
        assert bytes(token.bytes).decode("utf-8", "replace") == token.token or token.bytes


def test_sampling_is_reproducible_with_a_seed(client):
    args = dict(model="default", prompt=PROMPT, max_tokens=8, temperature=0.9, seed=11, n=2)
    first = client.completions.create(**args)
    again = client.completions.create(**args)
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert len(first.choices) == 2


def test_errors(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="default", prompt=PROMPT, temperature=5)
    assert bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model="default", prompt=PROMPT, max_tokens=10**6)
    assert long.value.body["param"] == "max_tokens"
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="nope", prompt=PROMPT)
    assert "nope" in missing.value.body["message"]


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["default"]
    assert client.models.retrieve("default").id == "default"


def test_metrics_parse(server, client):
    client.completions.create(model="default", prompt=PROMPT, max_tokens=4, temperature=0)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus_client names counters without their _total suffix.
    requests = families["tessera_requests"]
    assert requests.type == "counter"
    ok_http = [s.value for s in requests.samples
               if s.labels == {"api": "http", "model": "default", "code": "OK"}
               and s.name == "tessera_requests_total"]
    assert ok_http and ok_http[0] >= 1
    for name in ("tessera_time_to_first_token_seconds", "tessera_time_per_output_token_seconds",
                 "tessera_request_duration_seconds"):
        assert families[name].type == "histogram"
        count = [s.value for s in families[name].samples if s.name == name + "_count"]
        assert count and count[0] >= 1
    for name in ("tessera_requests_waiting", "tessera_requests_running",
                 "tessera_kv_blocks_used", "tessera_kv_blocks_total",
                 "tessera_prefix_cache_hit_ratio"):
        assert families[name].type == "gauge"
    [total] = families["tessera_kv_blocks_total"].samples
    assert total.value > 0
    [steps] = families["tessera_rank_steps"].samples
    assert steps.labels["rank"] == "0" and steps.value > 0
    [compute] = families["tessera_rank_compute_seconds"].samples
    assert compute.value > 0
