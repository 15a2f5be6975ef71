"""`vlm_judge`: score images with a vision-language model behind any OpenAI-compatible chat endpoint
(`POST {base_url}/chat/completions`: sglang, vLLM, TGI, llama.cpp server, ...).

As in Flow-GRPO's UnifiedReward scorer: each image is resized to 512x512, sent as a base64 PNG data URL next to
the prompt template, `temperature=0`; the reply is parsed for "Final Score: k" (UnifiedReward) or
"<Score>k</Score>" (Qwen-VL rubric) and the reward is k / 5 in [0, 1].

Faults. A timeout, a refused connection, HTTP 429 / 5xx or a body that is not an OpenAI chat reply (malformed
JSON) is retried up to `max_retries` times, after an exponential backoff with full jitter
(`uniform(0, min(max_backoff, retry_backoff * 2**attempt))`, or the server's Retry-After when it sends one).
A request that still fails is flagged in `details["failed"]`; a reply without a score is flagged in
`details["unparsed"]` (`details["parsed"]` marks the scored ones). Both score `on_failure`: NaN by default, so the
training loop drops their groups and counts them (train/nonfinite_groups) instead of training on a made-up
score; `on_failure=0.0` gives the old "score 0" behaviour. If every request of a call fails, a ConnectionError
names the endpoint. Requests run in a thread pool of `concurrency` workers; `stats` counts requests, retries,
failures and unparsed replies since the reward was built, and the peak number of requests in flight.

Serve UnifiedReward with e.g. `python -m sglang.launch_server --model-path CodeGoat24/UnifiedReward-7b-v1.5
--api-key flowgrpo --port 8000 --chat-template chatml-llava` and load
`rewards.load("vlm_judge", model="CodeGoat24/UnifiedReward-7b-v1.5", api_key="flowgrpo")`.
Uses only the standard library (urllib).
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image

from rewards.base import Reward, RewardOutput
from rewards.registry import register

TEMPLATES = {
    # UnifiedReward's point-score prompt (as used by Flow-GRPO / DiffusionNFT)
    "unifiedreward": (
        "You are given a text caption and a generated image based on that caption. Your task is to evaluate this "
        "image based on two key criteria:\n1. Alignment with the Caption: Assess how well this image aligns with "
        "the provided caption. Consider the accuracy of depicted objects, their relationships, and attributes as "
        "described in the caption.\n2. Overall Image Quality: Examine the visual quality of this image, including "
        "clarity, detail preservation, color accuracy, and overall aesthetic appeal.\nBased on the above criteria, "
        "assign a score from 1 to 5 after 'Final Score:'.\nYour task is provided as follows:\nText Caption: "
        "[{prompt}]"
    ),
    # Qwen-VL style rubric answered with <Score>k</Score> (Flow-GRPO's experimental QwenVL reward format)
    "qwenvl": (
        "You are an expert judge of generated images. The image was generated from the prompt: \"{prompt}\".\n"
        "Rate the image from 1 to 5 considering how faithfully it follows the prompt and its visual quality "
        "(composition, clarity, colour, absence of artifacts):\n1 = very poor, 2 = poor, 3 = acceptable, "
        "4 = good, 5 = excellent.\nThink briefly, then give the final rating as <Score>k</Score> with an "
        "integer k from 1 to 5."
    ),
    # cross-view consistency of a 3D asset's renders (AR3D-R1 style), one image = a grid of views
    "consistency3d": (
        "The image shows several rendered views of one 3D object generated from the prompt: \"{prompt}\".\n"
        "Judge the 3D consistency across the views: the shape outline, the appearance and the object parts "
        "should describe one coherent object.\nGive a score from 1 to 5 after 'Final Score:'."
    ),
}
_FINAL = re.compile(r"Final Score:\s*([1-5](?:\.\d+)?)", re.I)
_TAG = re.compile(r"<Score>\s*(\d+(?:\.\d+)?)\s*</Score>", re.I)


def parse_score(text: str | None, max_score: float = 5.0) -> float | None:
    """"Final Score: 4" -> 0.8; "<Score>3</Score>" -> 0.6; anything else (or out of range) -> None."""
    if not text:
        return None
    for pat in (_FINAL, _TAG):
        m = pat.findall(text)
        if m:
            v = float(m[-1])
            return v / max_score if 0 <= v <= max_score else None
    return None


def image_data_url(image: Image.Image, size: int | None = 512) -> str:
    if size:
        image = image.resize((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # lossless either way; level 1 is several times faster
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


def _retry_after(headers) -> float | None:
    """Seconds from an HTTP Retry-After header given as a number (HTTP dates are ignored)."""
    try:
        v = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError, AttributeError):
        return None
    return v if math.isfinite(v) and v >= 0 else None


@register("vlm_judge")
class VLMJudge(Reward):
    name = "vlm_judge"
    input_format = "pil"

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str = "CodeGoat24/UnifiedReward-7b-v1.5",
        api_key: str | None = "EMPTY",
        template: str = "unifiedreward",
        max_score: float = 5.0,
        image_size: int | None = 512,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
        max_backoff: float = 30.0,
        concurrency: int = 8,
        batch_size: int = 64,
        on_failure: float = float("nan"),
    ):
        if not urllib.parse.urlparse(base_url).scheme.startswith("http"):
            raise ValueError(f"vlm_judge: base_url must be http(s)://host:port/v1, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.template = TEMPLATES.get(template, template)
        if "{prompt}" not in self.template:
            raise ValueError(f"vlm_judge: template must be one of {sorted(TEMPLATES)} or contain '{{prompt}}'")
        self.max_score, self.image_size, self.max_tokens = float(max_score), image_size, int(max_tokens)
        self.temperature, self.timeout = float(temperature), float(timeout)
        self.max_retries, self.retry_backoff = int(max_retries), float(retry_backoff)
        self.max_backoff = float(max_backoff)
        if self.max_retries < 0 or not self.timeout > 0 or self.retry_backoff < 0 or self.max_backoff < 0:
            raise ValueError("vlm_judge: need max_retries >= 0, timeout > 0, retry_backoff >= 0 and max_backoff >= 0")
        self.concurrency, self.batch_size = max(1, int(concurrency)), int(batch_size)
        self.on_failure = float(on_failure)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.stats = {"requests": 0, "retries": 0, "failed": 0, "unparsed": 0, "peak_in_flight": 0}
        self._rng = random.Random()
        host = urllib.parse.urlparse(base_url).hostname or ""
        # never send a local server's traffic through an HTTP proxy from the environment
        handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
        self._opener = urllib.request.build_opener(*handlers)

    def request_body(self, image: Image.Image, prompt: str) -> dict:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_data_url(image, self.image_size)}},
                {"type": "text", "text": self.template.format(prompt=prompt)},
            ]}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _post(self, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with self._lock:
            self.stats["requests"] += 1
            self._in_flight += 1
            self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], self._in_flight)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code >= 500:
                raise _Retryable(f"HTTP {e.code}", _retry_after(e.headers)) from e
            raise RuntimeError(f"vlm_judge: {self.url} answered HTTP {e.code}: {e.read()[:200]!r}") from e
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            raise _Retryable(str(e)) from e
        finally:
            with self._lock:
                self._in_flight -= 1
        try:
            return json.loads(raw.decode("utf-8"))["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            raise _Retryable(f"not an OpenAI chat reply: {raw[:80]!r}") from None

    def ask(self, image: Image.Image, prompt: str) -> tuple[str | None, str | None]:
        """(reply text, error) for one image: up to max_retries retries, each after a jittered exponential backoff
        (or the server's Retry-After, capped at max_backoff)."""
        body, err = self.request_body(image, prompt), None
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(body), None
            except _Retryable as e:
                err = str(e)
                if attempt < self.max_retries:
                    with self._lock:
                        self.stats["retries"] += 1
                        jitter = self._rng.random()
                    cap = min(self.max_backoff, self.retry_backoff * 2**attempt)
                    time.sleep(min(self.max_backoff, e.retry_after) if e.retry_after is not None else jitter * cap)
        return None, err

    def score(self, samples, prompts, metadata) -> RewardOutput:
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(samples))) as pool:
            results = list(pool.map(self.ask, samples, prompts))
        replies = [r for r, _ in results]
        failed = [r is None for r in replies]
        if all(failed):
            raise ConnectionError(
                f"vlm_judge: no answer from {self.url} ({results[0][1]}); start an OpenAI-compatible server there "
                "or pass base_url=..."
            )
        parsed = [parse_score(r, self.max_score) for r in replies]
        unparsed = [p is None and not f for p, f in zip(parsed, failed)]
        with self._lock:
            self.stats["failed"] += sum(failed)
            self.stats["unparsed"] += sum(unparsed)
        scores = torch.tensor([p if p is not None else self.on_failure for p in parsed], dtype=torch.float32)
        details = {
            "parsed": torch.tensor([p is not None for p in parsed]),
            "failed": torch.tensor(failed),
            "unparsed": torch.tensor(unparsed),
            "replies": [r or "" for r in replies],
            "errors": [e or "" for _, e in results],
        }
        return RewardOutput(scores, details)
