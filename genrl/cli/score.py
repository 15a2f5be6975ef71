"""`genrl score`: score a folder of images with one or more rewards.

    genrl score --reward ocr --reward jpeg_compressibility:0.5 --images out/ --prompts prompts.txt --out s.jsonl

- `--images DIR`: .png/.jpg/.jpeg/.webp/.bmp files, taken in sorted file-name order.
- `--prompts FILE`: a text file with one prompt per line in that order (blank lines ignored), or a JSONL file
  (`.jsonl`, or first line starting with "{") of {"file": "name.png", "prompt": "..."} rows naming the images to
  score; a row's "metadata" dict (or else the whole row, e.g. GenEval's metadata rows) is passed to the rewards.
- `--reward NAME[:WEIGHT]` (repeatable, weight 1 by default); `--option NAME.KEY=VALUE` passes a load option
  (VALUE parsed as JSON when possible, e.g. `--option ocr.device=\"cpu\"`, `--option pickscore.model=/ckpt`).
- Output: one JSON line per image ({"file", "prompt", NAME: score, ..., "total": weighted sum}, plus numeric
  per-sample details as "NAME/KEY") to `--out`, or to stdout without `--out`; then a summary table
  (mean and std per reward and of the total).
"""

from __future__ import annotations

import json
import math
import os
import sys

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def add_arguments(p) -> None:
    p.add_argument("--reward", action="append", required=True, metavar="NAME[:WEIGHT]",
                   help="a reward to apply (repeatable); the total is the weighted sum")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (sorted by file name)")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help="text file, one prompt per line in sorted image order, or JSONL rows {file, prompt}")
    p.add_argument("--out", metavar="FILE.jsonl", help="write one JSON line per image here (default: stdout)")
    p.add_argument("--option", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="load option for one reward, e.g. pickscore.model=/path/to/PickScore_v1")
    p.add_argument("--device", help="device for every reward that takes one (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=32, help="images loaded and scored at a time")


def _user_error(msg: str):
    from genrl.cli import UserError

    return UserError(msg)


def parse_rewards(specs: list[str]) -> dict[str, float]:
    import rewards

    out: dict[str, float] = {}
    for spec in specs:
        name, _, w = spec.partition(":")
        name = name.strip()
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise _user_error(f"--reward {spec!r}: weight {w!r} is not a number; use NAME or NAME:WEIGHT") from None
        if name not in rewards.available():
            raise _user_error(f"unknown reward {name!r}; available: {', '.join(rewards.available())}")
        if name in out:
            raise _user_error(f"reward {name!r} given twice; pass each reward once with its weight")
        out[name] = weight
    return out


def parse_options(items: list[str], names) -> dict[str, dict]:
    opts: dict[str, dict] = {n: {} for n in names}
    for item in items:
        key, eq, value = item.partition("=")
        name, dot, k = key.partition(".")
        if not eq or not dot or not k:
            raise _user_error(f"--option {item!r}: use NAME.KEY=VALUE, e.g. ocr.device=cpu")
        if name not in opts:
            raise _user_error(f"--option {item!r}: {name!r} is not one of the --reward names ({', '.join(opts)})")
        try:
            opts[name][k] = json.loads(value)
        except json.JSONDecodeError:
            opts[name][k] = value
    return opts


def read_inputs(images_dir: str, prompts_file: str) -> tuple[list[str], list[str], list[dict] | None]:
    """(image paths, prompts, metadata or None) in scoring order; raises one-line errors on bad input."""
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"--images {images_dir}: no such directory")
    if not os.path.isfile(prompts_file):
        raise FileNotFoundError(f"--prompts {prompts_file}: no such file")
    with open(prompts_file, encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f]
    nonblank = [ln for ln in lines if ln.strip()]
    if not nonblank:
        raise _user_error(f"--prompts {prompts_file} is empty; put one prompt per line (sorted image order)")
    if prompts_file.endswith(".jsonl") or nonblank[0].lstrip().startswith("{"):
        paths, prompts, metas = [], [], []
        for i, ln in enumerate(nonblank):
            try:
                row = json.loads(ln)
            except json.JSONDecodeError as e:
                raise _user_error(f"--prompts {prompts_file} line {i + 1} is not JSON ({e.msg})") from None
            if not isinstance(row, dict) or "file" not in row or "prompt" not in row:
                raise _user_error(f"--prompts {prompts_file} line {i + 1} needs keys 'file' and 'prompt'")
            path = os.path.join(images_dir, row["file"])
            if not os.path.isfile(path):
                raise FileNotFoundError(f"--prompts line {i + 1} names {row['file']!r}, not found in {images_dir}")
            paths.append(path)
            prompts.append(str(row["prompt"]))
            metas.append(row.get("metadata", row))
        return paths, prompts, metas
    paths = sorted(os.path.join(images_dir, n) for n in os.listdir(images_dir) if n.lower().endswith(IMAGE_EXTS))
    if not paths:
        raise _user_error(f"--images {images_dir} holds no {'/'.join(IMAGE_EXTS)} files")
    if len(paths) != len(nonblank):
        raise _user_error(f"{len(paths)} images in {images_dir} but {len(nonblank)} prompts in {prompts_file}; "
                          "give one prompt per image (sorted file-name order) or a JSONL with {file, prompt} rows")
    return paths, nonblank, None


def _stats(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def run(args) -> int:
    import torch
    from PIL import Image

    import rewards

    if args.out and os.path.isdir(args.out):
        raise _user_error(f"--out {args.out} is a directory; give a file name such as {args.out.rstrip('/')}/"
                          "scores.jsonl")
    weights = parse_rewards(args.reward)
    opts = parse_options(args.option, weights)
    paths, prompts, metas = read_inputs(args.images, args.prompts)
    if args.batch_size < 1:
        raise _user_error("--batch-size must be >= 1")
    loaded = {}
    for name in weights:
        o = dict(opts[name])
        if args.device and "device" not in o:
            o["device"] = args.device
        try:
            loaded[name] = rewards.load(name, **o)
        except TypeError as e:
            raise _user_error(f"reward {name!r}: bad option ({e})") from None
        if getattr(loaded[name], "input_format", "pil") not in ("pil", "tensor"):
            raise _user_error(f"reward {name!r} scores {loaded[name].input_format} samples, not images")
    rows = []
    for s in range(0, len(paths), args.batch_size):
        bp, bprompts = paths[s:s + args.batch_size], prompts[s:s + args.batch_size]
        bmeta = None if metas is None else metas[s:s + args.batch_size]
        images = []
        for p in bp:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except OSError as e:
                raise _user_error(f"cannot read image {p} ({e})") from None
        batch_rows = [{"file": os.path.basename(p), "prompt": q} for p, q in zip(bp, bprompts)]
        total = torch.zeros(len(bp))
        for name, r in loaded.items():
            out = r(images, bprompts, bmeta)
            total += weights[name] * out.scores
            for i, row in enumerate(batch_rows):
                row[name] = float(out.scores[i])
                for k, v in out.details.items():
                    if isinstance(v, torch.Tensor) and v.ndim == 1 and len(v) == len(bp) and k != name:
                        row[f"{name}/{k}"] = float(v[i])
        for i, row in enumerate(batch_rows):
            row["total"] = float(total[i])
        rows += batch_rows
    fh = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    finally:
        if args.out:
            fh.close()
    cols = list(weights) + (["total"] if len(weights) > 1 else [])
    width = max(len(c) for c in cols + ["reward"])
    print(f"{'reward':<{width}}  {'weight':>7}  {'mean':>10}  {'std':>10}   ({len(rows)} images)")
    for c in cols:
        m, sd = _stats([r[c] for r in rows])
        w = f"{weights[c]:g}" if c in weights else ""
        print(f"{c:<{width}}  {w:>7}  {m:>10.4f}  {sd:>10.4f}")
    if args.out:
        print(f"wrote {len(rows)} lines to {args.out}")
    return 0
