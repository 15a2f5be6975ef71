"""Reward throughput on CPU: samples per second, batched (one call on the whole set) vs one-by-one.

    python benchmarks/rewards_bench.py                      # all cases, table into benchmarks/rewards.md
    python benchmarks/rewards_bench.py --only ocr,jpeg_compressibility --threads 2 --no-write

Only rewards that run here without downloads: real ones (jpeg, ocr with rapidocr's bundled models, shapes,
multiview3d rendering, the text verifiers) and, labelled "tiny", the model-based ones on tiny random models built
from configs (their numbers measure preprocessing and plumbing, not the real networks). vlm_judge runs against a
fake local server (client cost only: PNG encoding and HTTP). Timings are medians of `--repeats` runs after one
warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rewards  # noqa: E402
from rewards import render3d  # noqa: E402


# ---- inputs -------------------------------------------------------------------------------------------------------
def natural_images(n: int, size: int = 512, seed: int = 0) -> list[Image.Image]:
    """Smooth gradients + blobs + mild noise: JPEG sizes like generated images, not like pure noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        img = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(3)], -1) * 60 + 128
        for _ in range(6):
            cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.2)]
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 6, img.shape)
        out.append(Image.fromarray(img.clip(0, 255).astype(np.uint8)))
    return out


def text_images(n: int) -> tuple[list[Image.Image], list[str]]:
    words = ["Hello World", "NASA 2049", "Open Sesame", "Flow Matching", "GRPO Rocks", "Shapes World"]
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", 56)
    except OSError:
        font = ImageFont.load_default(size=56)
    imgs, prompts = [], []
    for i in range(n):
        w = words[i % len(words)]
        im = Image.new("RGB", (640, 160), "white")
        ImageDraw.Draw(im).text((30, 45), w, fill="black", font=font)
        imgs.append(im)
        prompts.append(f'a sign that says "{w}"')
    return imgs, prompts


class _FakeVLM(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        data = json.dumps({"choices": [{"message": {"content": "Final Score: 4"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# ---- cases: name -> (label, builder() -> (reward, samples, prompts, metadata)) ---------------------------------------
def build_cases(n: int, tmp: Path) -> dict:
    def jpeg(name):
        return lambda: (rewards.load(name), natural_images(n), ["x"] * n, None)

    def ocr():
        imgs, prompts = text_images(max(4, n // 4))
        return rewards.load("ocr"), imgs, prompts, None

    def shapes():
        from genrl.shapes.prompts import prompts_and_metadata, split_specs
        from genrl.shapes.render import render

        specs = split_specs("eval")[: 4 * n]
        prompts, meta = prompts_and_metadata(specs)
        imgs = [render(s, rng=i) for i, s in enumerate(specs)]
        return rewards.load("shapes"), imgs, prompts, meta

    def mv(kind):
        def build():
            r = rewards.load("multiview3d", image_reward="jpeg_incompressibility", n_views=8, resolution=256)
            if kind == "mesh":
                assets = [render3d.uv_sphere(0.6, 48, 96) for _ in range(max(4, n // 4))]
            else:
                assets = [render3d.sphere_points(0.6, 20000) for _ in range(max(4, n // 4))]
            return r, assets, ["an object"] * len(assets), None

        return build

    def tiny_dirs():
        if not (tmp / "clip").exists():
            sys.path.insert(0, str(ROOT / "tests"))
            from test_rewards_geneval import _tiny_clip, _tiny_mask2former

            (tmp / "clip").mkdir()
            (tmp / "det").mkdir()
            _tiny_clip(tmp / "clip")
            _tiny_mask2former(tmp / "det")
        return str(tmp / "clip"), str(tmp / "det")

    def tiny_clip_reward(name):
        def build():
            clip, _ = tiny_dirs()
            return rewards.load(name, model=clip, processor=clip, local_files_only=True, device="cpu"), \
                natural_images(n), ["a photo"] * n, None

        return build

    def tiny_geneval():
        clip, det = tiny_dirs()
        r = rewards.load("geneval", model=det, clip_model=clip, local_files_only=True, device="cpu")
        meta = [{"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "red"}], "exclude": []}] * n
        return r, natural_images(n), ["a photo of a red cat"] * n, meta

    def vlm():
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeVLM)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        r = rewards.load("vlm_judge", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1")
        return r, natural_images(n), ["a photo"] * n, None

    def verifier(name):
        def build():
            m = 50 * n
            if name == "math_answer":
                texts = [f"Step 1 ... so the answer is \\boxed{{\\frac{{{i}}}{{2}}}}" for i in range(m)]
                meta = [{"answer": str(i / 2)} for i in range(m)]
            elif name == "sudoku":
                sol = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
                texts = [f"<answer>{sol}</answer>"] * m
                puzzle = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
                meta = [{"puzzle": puzzle}] * m
            else:
                texts = ["<answer>(95 - 39) - (2 + 1)</answer>"] * m
                meta = [{"numbers": [95, 39, 2, 1], "target": 53}] * m
            return rewards.load(name), texts, ["q"] * m, meta

        return build

    return {
        "jpeg_compressibility": ("real, 512x512", jpeg("jpeg_compressibility")),
        "jpeg_incompressibility": ("real, 512x512", jpeg("jpeg_incompressibility")),
        "ocr": ("real (rapidocr bundled PP-OCRv4), 640x160 text", ocr),
        "shapes": ("real, shapes-world 32x32", shapes),
        "multiview3d_mesh": ("real render: 8 views 256px of a 9k-triangle sphere + jpeg (per asset)", mv("mesh")),
        "multiview3d_points": ("real render: 8 views 256px of 20k points + jpeg (per asset)", mv("points")),
        "pickscore_tiny": ("tiny random CLIP, 512x512 input", tiny_clip_reward("pickscore")),
        "clip_score_tiny": ("tiny random CLIP, 512x512 input", tiny_clip_reward("clip_score")),
        "geneval_tiny": ("tiny random Mask2Former + CLIP, 512x512", tiny_geneval),
        "vlm_judge_fake": ("fake local server: client cost only, 512x512", vlm),
        "math_answer": ("real, text", verifier("math_answer")),
        "sudoku": ("real, 9x9 text", verifier("sudoku")),
        "countdown": ("real, text", verifier("countdown")),
    }


def _time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench(reward, samples, prompts, meta, repeats: int) -> tuple[float, float, int]:
    n = len(samples)
    reward(samples[:1], prompts[:1], None if meta is None else meta[:1])  # warm-up (lazy inits, caches)
    batched = _time(lambda: reward(samples, prompts, meta), repeats)
    one = _time(lambda: [reward(samples[i:i + 1], prompts[i:i + 1], None if meta is None else meta[i:i + 1])
                         for i in range(n)], repeats)
    return n / batched, n / one, n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="images per case (ocr uses n/4, multiview3d n/4 assets)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: robust on a shared machine)")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "rewards.md"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="rewards_bench_"))
    cases = build_cases(args.n, tmp)
    names = args.only.split(",") if args.only else list(cases)
    rows = []
    for name in names:
        label, build = cases[name]
        reward, samples, prompts, meta = build()
        b, o, n = bench(reward, samples, prompts, meta, args.repeats)
        rows.append((name, label, n, b, o))
        print(f"{name:<24} n={n:<5} batched {b:10.1f}/s   one-by-one {o:10.1f}/s   ({label})", flush=True)
    if not args.no_write:
        write_md(rows, args)
    return 0


def write_md(rows, args) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Reward throughput on CPU",
        "",
        "Generated by `python benchmarks/rewards_bench.py` "
        f"(n={args.n}, median of {args.repeats} runs after a warm-up call).",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} with {args.threads} threads, Python {platform.python_version()}; "
        f"1-min load average at the end: {load:.1f} (the machine was shared, so numbers are lower bounds).",
        "",
        "Units: samples per second (images; assets for multiview3d; strings for the verifiers). \"Batched\" is one "
        "call on all samples (the reward batches internally); \"one-by-one\" calls the reward per sample.",
        "",
        "| reward | what ran | n | batched /s | one-by-one /s | speed-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, label, n, b, o in rows:
        lines.append(f"| {name} | {label} | {n} | {b:.1f} | {o:.1f} | {b / o:.2f}x |")
    lines += [
        "",
        "Notes:",
        "- `*_tiny` rows use tiny random models built from configs: they time preprocessing, tokenisation and "
        "plumbing, not the real networks (PickScore/CLIP ViT-H/L, Mask2Former Swin-S), which need a GPU for "
        "training-time use.",
        "- `vlm_judge_fake` answers instantly; with a real VLM server the model's latency dominates and "
        "`concurrency` (default 8 parallel requests) is what matters.",
        "- multiview3d rows count assets (each = 8 rendered views scored by jpeg_incompressibility).",
        "- Rewards without a network (jpeg, ocr, shapes, multiview3d rendering) gain nothing from batching; their "
        "batched/one-by-one differences are run-to-run noise of a shared machine.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
