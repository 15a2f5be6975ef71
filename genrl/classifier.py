"""CTRL's offline step: train a calibrated classifier p(y | x) on a labelled image dataset (other_methods.md §1.5).

Dataset sources:
  * a folder with one sub-folder per label:  DATA/small/*.png, DATA/large/*.png  (label = sub-folder name)
  * a .jsonl file, one {"image": PATH, "label": NAME} per line (PATH relative to the file's folder; other keys,
    e.g. "prompt", are kept for supervised baselines)
Images are read as RGB (png / jpg / jpeg / webp / bmp), resized to `input_size`, values in [0, 1]. An unreadable
image, an image without a label, an empty label set or a label outside `labels=`: a one-line error before
anything is written.

Recipe (the reference's, scaled down): a seeded held-out split (`val_fraction`), Adam, cross-entropy,
ReduceLROnPlateau(0.1, patience 3) on the validation loss, batch `batch_size`, `epochs` epochs, keeping the
weights of the epoch with the lowest validation loss; then temperature scaling: one scalar T minimising the
validation NLL of softmax(logits / T) (LBFGS on log T, lr 0.1, 100 iterations; the reference's lr 0.01 x 50 stops
short, see fit_temperature). The result is a `rewards.classifier.ImageClassifier` directory, loadable without genrl.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class LabelledImages:
    images: torch.Tensor  # float [N, 3, S, S] in [0, 1]
    targets: torch.Tensor  # long [N]
    labels: list[str]
    rows: list[dict]  # per image: {"image": path, "label": name, ...extra keys from the jsonl}


def list_dataset(source: str) -> list[dict]:
    """[{"image": path, "label": name, ...}] of a folder-per-label directory or a jsonl file (no image reads)."""
    if not os.path.exists(source):
        raise FileNotFoundError(f"dataset {source!r} not found; give a folder with one sub-folder per label or a "
                                "jsonl of {\"image\": ..., \"label\": ...} lines")
    rows = []
    if os.path.isdir(source):
        loose = sorted(f for f in os.listdir(source) if f.lower().endswith(IMAGE_EXTS))
        if loose:
            raise ValueError(f"{os.path.join(source, loose[0])} has no label: put each image in a sub-folder named "
                             "after its label (DATA/<label>/*.png) or list them in a jsonl")
        for lab in sorted(d for d in os.listdir(source) if os.path.isdir(os.path.join(source, d))):
            files = sorted(f for f in os.listdir(os.path.join(source, lab)) if f.lower().endswith(IMAGE_EXTS))
            rows += [{"image": os.path.join(source, lab, f), "label": lab} for f in files]
    else:
        base = os.path.dirname(os.path.abspath(source))
        with open(source) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{source}:{n}: not valid JSON ({e.msg}); one object per line") from None
                if not isinstance(row, dict) or "image" not in row:
                    raise ValueError(f"{source}:{n}: needs an \"image\" key (path of the image)")
                if row.get("label") in (None, ""):
                    raise ValueError(f"{source}:{n}: image {row['image']!r} has no \"label\"; label every line")
                path = row["image"] if os.path.isabs(row["image"]) else os.path.join(base, row["image"])
                rows.append({**row, "image": path, "label": str(row["label"])})
    if not rows:
        raise ValueError(f"dataset {source!r} has no labelled images ({', '.join(IMAGE_EXTS)})")
    return rows


def load_dataset(source: str, input_size: int = 32, labels: list[str] | None = None) -> LabelledImages:
    """Read every image of `source` (see module docstring); labels order = `labels` or sorted names."""
    from PIL import Image

    rows = list_dataset(source)
    names = sorted({r["label"] for r in rows})
    if labels is not None:
        extra = sorted(set(names) - set(labels))
        if extra:
            raise ValueError(f"dataset {source!r} has label(s) {extra} not in --labels {labels}; add them or drop "
                             "those images")
        names = list(labels)
    if len(names) < 2:
        raise ValueError(f"dataset {source!r} has a single label {names}; a classifier needs at least two")
    imgs = []
    for r in rows:
        try:
            with Image.open(r["image"]) as im:
                im = im.convert("RGB")
                if im.size != (input_size, input_size):
                    im = im.resize((input_size, input_size), Image.BILINEAR)
                imgs.append(np.asarray(im, dtype=np.uint8))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read image {r['image']} ({type(e).__name__}); fix or remove it") from None
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.tensor([names.index(r["label"]) for r in rows], dtype=torch.long)
    return LabelledImages(x, y, names, rows)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, iters: int = 100, lr: float = 0.1) -> float:
    """Scalar T > 0 minimising NLL(softmax(logits / T), targets): LBFGS on log T. (The reference's LBFGS lr 0.01 x
    50 iterations stops short of the optimum when T is far from 1: it reaches T = 1.4 where the optimum is 3.)"""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=lr, max_iter=iters)
    logits, targets = logits.detach().float(), targets

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> float:
    conf, pred = probs.max(1)
    ece, edges = 0.0, torch.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += float(sel.float().mean() * ((pred[sel] == targets[sel]).float().mean() - conf[sel].mean()).abs())
    return ece


def _batched_logits(model, x: torch.Tensor, bs: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.logits(x[i : i + bs]) for i in range(0, len(x), bs)])


def train_classifier(data: LabelledImages, out: str, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                     val_fraction: float = 0.2, widths: tuple[int, ...] = (32, 64, 128), seed: int = 0,
                     log=print) -> dict:
    """Train + calibrate; writes the classifier directory `out` (must not exist or be empty); returns the report."""
    from rewards.classifier import ImageClassifier

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out!r} exists and is not empty; pick a new directory")
    n = len(data.targets)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 2:
        raise ValueError(f"only {n} images: too few to hold out {n_val} for calibration; add images")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    val, tr = perm[:n_val], perm[n_val:]
    torch.manual_seed(seed)
    model = ImageClassifier(data.labels, widths, data.images.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=3)
    xv, yv = data.images[val], data.targets[val]
    t0 = time.time()
    history, best = [], (float("inf"), None)
    for ep in range(epochs):
        model.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        tot, cnt = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            loss = F.cross_entropy(model.logits(data.images[idx]), data.targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot, cnt = tot + loss.item() * len(idx), cnt + len(idx)
        model.eval()
        lv = _batched_logits(model, xv)
        vloss = float(F.cross_entropy(lv, yv))
        sched.step(vloss)
        vacc = float((lv.argmax(1) == yv).float().mean())
        if vloss < best[0]:
            best = (vloss, {k: v.detach().clone() for k, v in model.state_dict().items()})
        history.append({"epoch": ep + 1, "train_loss": tot / max(cnt, 1), "val_loss": vloss, "val_acc": vacc})
        log(f"epoch {ep + 1}/{epochs}: train loss {tot / max(cnt, 1):.4f}  val loss {vloss:.4f}  val acc {vacc:.3f}")
    model.load_state_dict(best[1])  # the epoch with the lowest validation loss
    lv = _batched_logits(model, xv)
    temp = fit_temperature(lv, yv)
    model.temperature.fill_(temp)
    report = {
        "labels": data.labels, "images": n, "val_images": n_val, "epochs": epochs,
        "val_acc": float((lv.argmax(1) == yv).float().mean()),
        "val_nll_uncalibrated": float(F.cross_entropy(lv, yv)), "val_nll": float(F.cross_entropy(lv / temp, yv)),
        "val_ece_uncalibrated": expected_calibration_error(lv.softmax(1), yv),
        "val_ece": expected_calibration_error((lv / temp).softmax(1), yv), "temperature": temp,
        "train_acc": float((_batched_logits(model, data.images[tr]).argmax(1) == data.targets[tr]).float().mean()),
        "best_epoch": min(history, key=lambda h: h["val_loss"])["epoch"],
        "minutes": (time.time() - t0) / 60, "history": history,
    }
    model.save_pretrained(out, extra={"report": {k: v for k, v in report.items() if k != "history"}})
    with open(os.path.join(out, "train_log.json"), "w") as f:
        json.dump(report, f, indent=2)
    log(f"val acc {report['val_acc']:.3f}; temperature {temp:.3f}: val NLL {report['val_nll_uncalibrated']:.4f} -> "
        f"{report['val_nll']:.4f}, ECE {report['val_ece_uncalibrated']:.4f} -> {report['val_ece']:.4f}; wrote {out}")
    return report
