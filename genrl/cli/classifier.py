"""`genrl classifier --data DATA --out DIR`: train a calibrated image classifier p(y | x) (CTRL's offline step).

DATA: a folder with one sub-folder per label (DATA/<label>/*.png) or a jsonl of {"image": PATH, "label": NAME}.
DIR becomes a `rewards.classifier.ImageClassifier` directory (safetensors + json), the reward of
`algorithm.classifier` in a CTRL config. See genrl/classifier.py for the recipe.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="labelled images: DATA/<label>/*.png or a .jsonl")
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    p.add_argument("--labels", default=None, help="comma-separated label order (default: sorted names)")
    p.add_argument("--size", type=int, default=32, help="input side in pixels (images are resized)")
    p.add_argument("--widths", default="32,64,128", help="residual block widths")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share for early checks + calibration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads")


def run(args) -> int:
    import torch

    from genrl.classifier import load_dataset, train_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise ValueError(f"--widths {args.widths!r}: give three integers like 32,64,128") from None
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    data = load_dataset(args.data, args.size, labels)
    train_classifier(data, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     val_fraction=args.val_fraction, widths=widths, seed=args.seed)
    return 0
