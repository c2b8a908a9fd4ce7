"""`zt serve` as users run it (a subprocess, stopped by SIGTERM / SIGINT) over a small random-weight Llama saved
with transformers' save_pretrained and read by zigtensor's loader, with HF transformers' greedy generate as the
oracle; and `zt bench serve`, in-process and against that server (--url)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from oracle import oracle
from serve_fixtures import TOKENIZER, tiny_llama_folder, wait_until
from typer.testing import CliRunner

from zigtensor_cli.app import app

torch = oracle("torch")
transformers = oracle("transformers")


class ServeProcess:
    """`zt serve --port 0 ...` in a subprocess; the port is read from its 'serving model' log line."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "zigtensor_cli", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        ready = wait_until(lambda: self.url is not None or self.proc.poll() is not None, timeout=60, interval=0.05)
        assert ready and self.url is not None, "zt serve did not start:\n" + "".join(self.lines)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def url(self) -> str | None:
        for line in self.lines:
            match = re.search(r"serving model '.*' at (http://\S+)/v1", line)
            if match:
                return match.group(1)
        return None

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llama_serve")
    return folder, tiny_llama_folder(folder, transformers, torch)


@pytest.fixture(scope="module")
def served(tiny_llama):
    folder, _ = tiny_llama
    server = ServeProcess("--model", str(folder), "--served-model-name", "tiny", "--kv-blocks", "128",
                          "--block-size", "4", "--max-num-seqs", "8", "--grace-period", "10")
    yield server
    assert server.stop() == 0


def hf_greedy(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=0)
    return out[0, len(prompt_ids):].tolist()


def test_serve_help_lists_the_options():
    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--model", "--host", "--port", "--device", "--dtype", "--max-model-len", "--max-num-seqs",
                   "--kv-blocks", "--memory-budget", "--max-queue", "--api-key", "--served-model-name",
                   "--grace-period"):
        assert option in result.output, option


@pytest.mark.parametrize("args, message", [
    (["--kv-blocks", "10", "--memory-budget", "1GiB"], "not both"),
    (["--memory-budget", "lots"], "is not a size"),
    (["--port", "70000"], "65535"),
])
def test_serve_usage_errors_exit_2(tiny_llama, args, message):
    result = CliRunner().invoke(app, ["serve", "--model", str(tiny_llama[0]), *args], terminal_width=200)
    assert result.exit_code == 2 and message in result.output


def test_serve_unknown_model_fails_before_binding():
    r = subprocess.run([sys.executable, "-m", "zigtensor_cli", "serve", "--model", "no-such-model"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no model 'no-such-model'" in r.stderr and "Uvicorn running" not in r.stderr


def test_served_llama_equals_transformers_greedy(served, tiny_llama):
    _, hf = tiny_llama
    client = openai.OpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0)
    assert httpx.get(served.url + "/health").json() == {"status": "ok", "model": "tiny"}
    prompts = [[5, 9, 33, 2], list(range(40, 70)), [7]]
    got = client.completions.create(model="tiny", prompt=prompts, max_tokens=10, temperature=0,
                                    extra_body={"ignore_eos": True, "skip_special_tokens": False})
    for prompt, choice in zip(prompts, got.choices):
        assert choice.text == TOKENIZER.decode(hf_greedy(hf, prompt, 10), skip_special_tokens=False)
    messages = [{"role": "user", "content": "Hello world"}]
    prompt_ids = TOKENIZER.encode(TOKENIZER.apply_chat_template(messages), add_special_tokens=False)
    chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0,
                                          extra_body={"ignore_eos": True, "skip_special_tokens": False})
    assert chat.choices[0].message.content == TOKENIZER.decode(hf_greedy(hf, prompt_ids, 8),
                                                               skip_special_tokens=False)
    assert chat.usage.prompt_tokens == len(prompt_ids)
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0,
                                              stream=True, extra_body={"ignore_eos": True,
                                                                       "skip_special_tokens": False})
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == chat.choices[0].message.content


def test_bench_serve_against_the_server(served):
    result = CliRunner().invoke(app, ["bench", "serve", "--url", served.url, "--batch-size", "1,2",
                                      "--num-prompts", "3", "--input-len", "12", "--output-len", "5"],
                                terminal_width=250)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["batch_size"] for r in rows] == [1, 2] and [r["concurrency"] for r in rows] == [1, 2]
    for r in rows:
        assert (r["completed"], r["failed"], r["target"]) == (3, 0, served.url)
        assert r["output_tokens_per_s"] > 0 and r["ttft_ms"]["p50"] > 0 and r["e2e_ms"]["p99"] >= r["ttft_ms"]["p99"]
        assert r["engine_overhead_pct"] is None
    assert "TTFT ms" in result.output and "E2E ms" in result.output


def test_bench_serve_in_process(tiny_llama, tmp_path):
    out = tmp_path / "serve.jsonl"
    result = CliRunner().invoke(app, ["bench", "serve", "--model", str(tiny_llama[0]), "--batch-size", "2",
                                      "--num-prompts", "4", "--input-len", "10", "--output-len", "6", "--json",
                                      str(out)], terminal_width=250)
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["target"], row["batch_size"], row["completed"], row["failed"]) == ("engine", 2, 4, 0)
    assert row["output_tokens_per_s"] > 0 and 0 <= row["engine_overhead_pct"] < 100
    assert row["tpot_ms"]["mean"] > 0 and len(row["itl_ms"]) == 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_running_stream_finish_then_exits_0(tiny_llama, sig):
    folder, _ = tiny_llama
    server = ServeProcess("--model", str(folder), "--kv-blocks", "128", "--block-size", "4", "--grace-period", "20")
    body = {"model": str(folder), "prompt": [5, 6, 7], "max_tokens": 250, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        next(lines)
        server.proc.send_signal(sig)
        events = [line for line in lines if line.startswith("data: ")]
    code = server.proc.wait(timeout=30)
    assert code == 0, "".join(server.lines)
    assert events[-1] == "data: [DONE]" and json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
    assert not any("error" in json.loads(e[6:]) for e in events[:-1])
    time.sleep(0.1)  # the reader thread takes the last lines
    log = "".join(server.lines)
    assert "draining: running requests have 20 s" in log and "Waiting for connections to close" in log, log
