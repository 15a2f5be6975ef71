"""vlm_judge against a fake OpenAI-compatible server on 127.0.0.1 (good, malformed and slow answers)."""

import base64
import io
import json
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

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        text = body["messages"][0]["content"][1]["text"]
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
    assert out.scores.tolist() == pytest.approx([0.8, 0.0, 0.0, 0.6, 0.0])
    assert out.details["parsed"].tolist() == [True, False, False, True, False]
    assert out.details["failed"].tolist() == [False, False, True, False, False]
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


def test_parse_score():
    assert parse_score("Final Score: 4.5") == pytest.approx(0.9)
    assert parse_score("blah\nFinal score:2") == pytest.approx(0.4)
    assert parse_score("<Score>5</Score>") == 1.0
    assert parse_score("<Score> 7 </Score>") is None  # out of range
    assert parse_score("Final Score: 9") is None
    assert parse_score("") is None and parse_score(None) is None
