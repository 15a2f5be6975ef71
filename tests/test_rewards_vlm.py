"""vlm_judge against a fake OpenAI-compatible server on 127.0.0.1: good, unscored and malformed answers, timeouts,
HTTP 500 / 503 with Retry-After, slow answers under concurrent load, and a training run that keeps going while the
judge fails for some prompts."""

import base64
import io
import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from PIL import Image

import rewards
from rewards.vlm_judge import parse_score


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _status(self, code: int, headers: dict | None = None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        text = body["messages"][0]["content"][1]["text"]
        if "err500" in text or "blue" in text:
            return self._status(500)
        if "retryafter" in text and self.server.flaky_left > 0:
            self.server.flaky_left -= 1
            return self._status(503, {"Retry-After": "0"})
        if "busy" in text:  # a server that handles 2 requests at a time; the others queue
            with self.server.slots:
                with self.server.lock:
                    self.server.active += 1
                    self.server.peak = max(self.server.peak, self.server.active)
                time.sleep(0.05)
                with self.server.lock:
                    self.server.active -= 1
        if "slow" in text:
            time.sleep(0.6)
            reply = "Final Score: 5"
        elif "garbled" in text:
            reply = "I like this picture a lot."
        elif "notjson" in text:
            data = b"<html>oops</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        elif "tagged" in text:
            reply = "Looks fine. <Score>3</Score>"
        elif "flaky" in text and self.server.flaky_left > 0:
            self.server.flaky_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        else:
            reply = "The image matches the caption well.\nFinal Score: 4"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:  # the client timed out and left
            pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.requests, srv.flaky_left = [], 1
    srv.slots, srv.lock, srv.active, srv.peak = threading.Semaphore(2), threading.Lock(), 0, 0
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _judge(server, **kw):
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    opts = dict(base_url=url, model="judge-model", api_key="secret", timeout=0.2, max_retries=1, retry_backoff=0.01)
    opts.update(kw)
    return rewards.load("vlm_judge", **opts)


def test_good_malformed_and_timeout(server):
    r = _judge(server)
    imgs = [Image.new("RGB", (64, 48), (i * 60, 0, 0)) for i in range(4)]
    imgs.append(imgs[0])
    out = r(imgs, ["a red cat", "a garbled one", "a slow one", "a tagged one", "a notjson one"])
    assert out.scores.dtype == torch.float32
    # unscored (no score in the reply), timed out and malformed (not JSON) are NaN, never a made-up 0
    s = out.scores.tolist()
    assert s[0] == pytest.approx(0.8) and s[3] == pytest.approx(0.6) and all(math.isnan(s[i]) for i in (1, 2, 4))
    assert out.details["parsed"].tolist() == [True, False, False, True, False]
    assert out.details["unparsed"].tolist() == [False, True, False, False, False]
    assert out.details["failed"].tolist() == [False, False, True, False, True]
    assert "timed out" in out.details["errors"][2] and "not an OpenAI chat reply" in out.details["errors"][4]
    assert r.stats["failed"] == 2 and r.stats["unparsed"] == 1 and r.stats["retries"] == 2
    # the request: path, auth, model, temperature 0, image as a 512x512 PNG data URL, the prompt in the template
    path, headers, body = next(q for q in server.requests if "red cat" in json.dumps(q[2]))
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer secret"
    assert body["model"] == "judge-model" and body["temperature"] == 0
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.size == (512, 512) and img.getpixel((5, 5))[:3] == (0, 0, 0)
    assert "Text Caption: [a red cat]" in body["messages"][0]["content"][1]["text"]
    assert sum("slow" in json.dumps(q[2]) for q in server.requests) == 2  # one try + one retry
    assert sum("notjson" in json.dumps(q[2]) for q in server.requests) == 2
    # the old behaviour on request: failures score a fixed value
    assert _judge(server, on_failure=0.0)([imgs[0]], ["a garbled one"]).scores.tolist() == [0.0]


def test_http_500_retries_are_bounded_and_retry_after_is_honoured(server):
    r = _judge(server, max_retries=3, retry_backoff=0.01)
    out = r([Image.new("RGB", (8, 8))] * 2, ["err500", "ok"])
    assert math.isnan(out.scores[0]) and out.scores[1] == pytest.approx(0.8)
    assert out.details["failed"].tolist() == [True, False] and out.details["errors"][0] == "HTTP 500"
    assert sum("err500" in json.dumps(q[2]) for q in server.requests) == 4  # 1 try + max_retries, no more
    # Retry-After: 0 overrides a (here absurd) backoff: the retry comes at once
    t0 = time.time()
    out = _judge(server, retry_backoff=60.0)([Image.new("RGB", (8, 8))], ["retryafter"])
    assert out.scores.tolist() == pytest.approx([0.8]) and time.time() - t0 < 5
    # the jittered backoff never exceeds max_backoff
    t0 = time.time()
    _judge(server, max_retries=2, retry_backoff=100.0, max_backoff=0.05)([Image.new("RGB", (8, 8))] * 2,
                                                                        ["err500", "ok"])
    assert time.time() - t0 < 5


def test_slow_server_under_concurrent_load(server):
    r = _judge(server, concurrency=8, timeout=5.0)
    out = r([Image.new("RGB", (8, 8))] * 16, ["busy"] * 16)
    assert out.scores.tolist() == pytest.approx([0.8] * 16) and not out.details["failed"].any()
    assert 2 <= r.stats["peak_in_flight"] <= 8 and server.peak == 2 and r.stats["requests"] == 16


def test_training_run_continues_while_the_judge_fails(server, tmp_path):
    """The judge answers HTTP 500 for every prompt with "blue": those groups are dropped and counted, the run
    finishes, and the failure rate is logged."""
    from loop_helpers import tiny_config, tiny_shapes_model

    from genrl.loop import Trainer

    model = tiny_shapes_model(str(tmp_path / "model"))
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    run = tmp_path / "run"
    cfg = tiny_config(model, str(run), train={"steps": 3}, eval={"every": 0}, checkpoint={"every": 0},
                      sample={"groups_per_step": 4}, rewards={"vlm_judge": 1.0},
                      reward_options={"vlm_judge": {"base_url": url, "max_retries": 1, "retry_backoff": 0.0}})
    res = Trainer(cfg, progress=False, log_fn=lambda m: None).run()
    assert res.steps_done == 3
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl")) if "train/reward_mean" in line]
    assert len(rows) == 3 and sum(r["train/nonfinite_groups"] for r in rows) > 0
    assert all(math.isfinite(r["train/reward_mean"]) for r in rows)
    failed = [r["train/reward_vlm_judge/failed"] for r in rows]
    assert any(f > 0 for f in failed) and all(f < 1 for f in failed)


def test_retry_on_503_and_concurrency_limit(server):
    r = _judge(server, concurrency=2)
    out = r([Image.new("RGB", (8, 8))] * 3, ["flaky", "ok", "ok"])
    assert out.scores.tolist() == pytest.approx([0.8] * 3) and not out.details["failed"].any()
    assert r.concurrency == 2


def test_all_failed_raises_and_bad_options(server):
    with pytest.raises(ConnectionError, match="no answer from"):
        _judge(server)([Image.new("RGB", (8, 8))], ["slow"])
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(ConnectionError, match="start an OpenAI-compatible server"):
        _judge(server, base_url=f"http://127.0.0.1:{port}/v1")([Image.new("RGB", (8, 8))], ["x"])
    with pytest.raises(ValueError, match="base_url"):
        rewards.load("vlm_judge", base_url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="template"):
        rewards.load("vlm_judge", template="rate this image")
    with pytest.raises(ValueError, match="max_retries >= 0"):
        rewards.load("vlm_judge", max_retries=-1)


def test_parse_score():
    assert parse_score("Final Score: 4.5") == pytest.approx(0.9)
    assert parse_score("blah\nFinal score:2") == pytest.approx(0.4)
    assert parse_score("<Score>5</Score>") == 1.0
    assert parse_score("<Score> 7 </Score>") is None  # out of range
    assert parse_score("Final Score: 9") is None
    assert parse_score("") is None and parse_score(None) is None


def test_a_logged_only_judge_never_poisons_the_training_reward(server):
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    opts = {"vlm_judge": {"base_url": url, "max_retries": 0}}
    imgs, prompts = [Image.new("RGB", (16, 16))] * 2, ["a garbled one", "a red cat"]
    out = rewards.combine({"jpeg_compressibility": 1.0, "vlm_judge": 0.0}, opts)(imgs, prompts)
    assert torch.isfinite(out.scores).all() and math.isnan(out.details["vlm_judge"][0])
    weighted = rewards.combine({"jpeg_compressibility": 1.0, "vlm_judge": 1.0}, opts)(imgs, prompts)
    assert math.isnan(weighted.scores[0]) and math.isfinite(weighted.scores[1])  # a NaN that counts stays NaN
