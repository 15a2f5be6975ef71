"""vlm_judge under load and faults, against a local fake OpenAI-compatible server (no model, no network).

The server imitates a batching VLM server: it answers `--capacity` requests at a time, each after `--latency`
seconds; the rest queue. Fault injection draws, per request: a hang past the client's timeout, HTTP 500, or a
body that is not JSON. Two sweeps:

1. requests in flight: client `concurrency` 1..32 with no faults -> throughput relative to concurrency 1 and the
   peak number of requests in flight (the client never has more than `concurrency` open);
2. faults: each fault at rate p with max_retries 0..3 -> share of images left unscored (flagged, NaN), the
   retries spent and the slowdown against the fault-free run.

    python benchmarks/vlm_judge_bench.py --out benchmarks/vlm_judge.md
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from PIL import Image

from rewards.vlm_judge import VLMJudge


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, code: int, data: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        with srv.lock:
            u = srv.rng.random()
        p = srv.fault_rate
        with srv.slots:
            time.sleep(srv.latency)
            if u < p:  # hang past the client's timeout
                time.sleep(srv.hang)
                return self._send(200, b"{}")
            if u < 2 * p:
                return self._send(500)
            if u < 3 * p:
                return self._send(200, b"<html>upstream error</html>")
        reply = json.dumps({"choices": [{"message": {"content": "Final Score: 4"}}]}).encode()
        self._send(200, reply)


def serve(capacity: int, latency: float, fault_rate: float, hang: float, seed: int = 0) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.slots, srv.lock, srv.rng = threading.Semaphore(capacity), threading.Lock(), random.Random(seed)
    srv.latency, srv.fault_rate, srv.hang = latency, fault_rate, hang
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def run_once(srv, n: int, **judge_kw) -> dict:
    judge = VLMJudge(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", image_size=64, **judge_kw)
    imgs = [Image.new("RGB", (32, 32), (i % 255, 0, 0)) for i in range(n)]
    t0 = time.perf_counter()
    out = judge(imgs, ["a photo"] * n)
    wall = time.perf_counter() - t0
    return {"wall": wall, "unscored": float(torch.isnan(out.scores).float().mean()), **judge.stats}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=96, help="images per call in the concurrency sweep")
    ap.add_argument("--fault-images", type=int, default=480, help="images per call in the fault sweep")
    ap.add_argument("--capacity", type=int, default=8, help="requests the fake server answers at a time")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    ap.add_argument("--fault-rate", type=float, default=0.05, help="rate of EACH fault (hang, HTTP 500, not JSON)")
    ap.add_argument("--out", default=None, help="write the tables as markdown here")
    a = ap.parse_args(argv)
    timeout, hang = 4 * a.latency, 8 * a.latency
    lines = ["# vlm_judge under load and faults (`python benchmarks/vlm_judge_bench.py`)", "",
             f"Fake server: answers {a.capacity} requests at a time, {a.latency * 1000:.0f} ms each; {a.images} images "
             f"per call; client timeout {timeout * 1000:.0f} ms. Throughput is relative to concurrency 1, measured "
             "in one run.", "", "## Requests in flight (no faults)", "",
             "| concurrency | throughput (x concurrency 1) | peak in flight | unscored |", "|---|---|---|---|"]
    srv = serve(a.capacity, a.latency, 0.0, hang)
    base = None
    for c in (1, 2, 4, 8, 16, 32):
        r = run_once(srv, a.images, concurrency=c, timeout=timeout, max_retries=0)
        base = base or r["wall"]
        lines.append(f"| {c} | {base / r['wall']:.2f} | {r['peak_in_flight']} | {r['unscored']:.2f} |")
    srv.shutdown()
    clean = run_once(serve(a.capacity, a.latency, 0.0, hang), a.fault_images, concurrency=a.capacity, timeout=timeout)
    lines += ["", f"## Faults: each of hang / HTTP 500 / not JSON at rate {a.fault_rate} "
              f"(in all {3 * a.fault_rate:.2f} of requests), concurrency {a.capacity}, {a.fault_images} images", "",
              "| max_retries | unscored (flagged, NaN) | expected (fault rate ^ tries) | retries per image | "
              "wall (x fault-free) |", "|---|---|---|---|---|"]
    for k in (0, 1, 2, 3):
        srv = serve(a.capacity, a.latency, a.fault_rate, hang, seed=k)
        r = run_once(srv, a.fault_images, concurrency=a.capacity, timeout=timeout, max_retries=k,
                     retry_backoff=a.latency, max_backoff=4 * a.latency)
        srv.shutdown()
        lines.append(f"| {k} | {r['unscored']:.3f} | {(3 * a.fault_rate) ** (k + 1):.3f} | "
                     f"{r['retries'] / a.fault_images:.2f} | {r['wall'] / clean['wall']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
