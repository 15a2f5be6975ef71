"""Run-directory logging: metrics.jsonl, tensorboard events, sample grids (PNG with prompts), curves PNG.

metrics.jsonl holds one JSON object per line: training lines have `step` (completed steps), `wall_time`
(seconds since the run started, continued across resumes), `samples_seen`, `train/...` keys; evaluation
lines have `step` and `eval/...` keys (step 0 = before training).
"""

from __future__ import annotations

import json
import math
import os
import textwrap

import torch
from PIL import Image, ImageDraw, ImageFont


class MetricsLogger:
    """Append-only metrics on the main process (no-op elsewhere)."""

    def __init__(self, run_dir: str, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.tb = None
        if not enabled:
            return
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"),
                                        purge_step=None if resume_step is None else max(0, resume_step + 1))
            except Exception as e:  # tensorboard is optional at run time
                print(f"genrl: tensorboard logging disabled ({type(e).__name__}: {e})")

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
        if self.tb is not None:
            step = int(record["step"])
            for k, v in clean.items():
                if k != "step" and isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_metrics(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
    return out


def truncate_metrics(path: str, step: int) -> None:
    """Drop lines logged after checkpoint `step` (a resumed run re-logs them)."""
    rows = read_metrics(path)
    keep = [r for r in rows if r.get("step", 0) <= step]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in keep:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def save_grid(images: torch.Tensor, prompts: list[str], path: str, scores: list[float] | None = None,
              title: str | None = None, cols: int | None = None, cell: int = 160) -> str:
    """A PNG grid of images [N,3,H,W] in [0,1], each with its prompt (and score) written beneath it."""
    canvas = grid_image(images, prompts, scores, title, cols, cell)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.png"
    canvas.save(tmp)
    os.replace(tmp, path)
    return path


def save_video_grid(clips: torch.Tensor, prompts: list[str], path: str, scores: list[float] | None = None,
                    title: str | None = None, cols: int | None = None, cell: int = 128, ms_per_frame: int = 150) -> str:
    """An animated GIF grid of clips [N, F, 3, H, W] in [0, 1] (all playing together, looping), captioned as
    save_grid. Returns `path`."""
    frames = [grid_image(clips[:, f], prompts, scores, title, cols, cell).convert("P", palette=Image.Palette.ADAPTIVE)
              for f in range(clips.shape[1])]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.gif"
    frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    os.replace(tmp, path)
    return path


def grid_image(images: torch.Tensor, prompts: list[str], scores: list[float] | None = None, title: str | None = None,
               cols: int | None = None, cell: int = 160) -> Image.Image:
    """The captioned grid save_grid writes, as a PIL image."""
    n = images.shape[0]
    cols = cols or min(8, max(1, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    caption_h, title_h = 40, (24 if title else 0)
    font = _font(11)
    canvas = Image.new("RGB", (cols * cell, title_h + rows * (cell + caption_h)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 5), title, fill="black", font=_font(14))
    arr = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = c * cell, title_h + r * (cell + caption_h)
        im = Image.fromarray(arr[i]).resize((cell - 8, cell - 8), Image.NEAREST)
        canvas.paste(im, (x0 + 4, y0 + 4))
        text = prompts[i] if i < len(prompts) else ""
        if scores is not None and i < len(scores):
            text = f"[{scores[i]:.2f}] {text}"
        lines = textwrap.wrap(text, width=max(10, cell // 6))[:3]
        for k, line in enumerate(lines):
            draw.text((x0 + 4, y0 + cell + k * 12), line, fill="black", font=font)
    return canvas


def plot_curves(metrics_path: str, out_path: str, title: str = "") -> str | None:
    """curves.png: train reward (step mean and moving average) and every eval/* mean against step."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if "train/reward_mean" in r]
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    eval_keys = sorted({k for r in evals for k in r if k.startswith("eval/") and isinstance(r[k], (int, float))})
    eval_keys = [k for k in eval_keys if not k.startswith("eval/time")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    if train:
        s = [r["step"] for r in train]
        m = [r["train/reward_mean"] for r in train]
        ax.plot(s, m, alpha=0.5, label="train reward (step mean)")
        if len(m) >= 5:  # the step mean depends on which prompts were drawn: show a moving average too
            w = max(3, len(m) // 10)
            avg = [sum(m[max(0, i - w + 1) : i + 1]) / len(m[max(0, i - w + 1) : i + 1]) for i in range(len(m))]
            ax.plot(s, avg, linewidth=2, label=f"moving average ({w} steps)")
    ax.set_xlabel("step")
    ax.set_title("training reward")
    ax.legend(loc="best")
    ax = axes[1]
    # reward_mean first; a key whose points repeat an earlier one (a single reward's own key) is left out
    plotted: list = []
    for k in sorted(eval_keys, key=lambda k: (not k.endswith("reward_mean"), k)):
        pts = [(r["step"], r[k]) for r in evals if isinstance(r.get(k), (int, float))]
        if pts and pts not in plotted and len(plotted) < 8:
            plotted.append(pts)
            ax.plot(*zip(*pts), marker="o", label=k)
    ax.set_xlabel("step")
    ax.set_title("evaluation (fixed prompts, ODE, EMA weights)")
    if eval_keys:
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path


def before_after(before: str, after: str, out_path: str) -> str | None:
    """Side-by-side PNG of two sample grids (e.g. step 0 and the last eval), labelled."""
    if not (os.path.isfile(before) and os.path.isfile(after)) or before == after:
        return None
    a, b = Image.open(before).convert("RGB"), Image.open(after).convert("RGB")
    head = 26
    canvas = Image.new("RGB", (a.width + b.width + 12, max(a.height, b.height) + head), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 4), "before (" + os.path.basename(before) + ")", fill="black", font=_font(16))
    draw.text((a.width + 18, 4), "after (" + os.path.basename(after) + ")", fill="black", font=_font(16))
    canvas.paste(a, (0, head))
    canvas.paste(b, (a.width + 12, head))
    tmp = out_path + ".tmp.png"
    canvas.save(tmp)
    os.replace(tmp, out_path)
    return out_path
