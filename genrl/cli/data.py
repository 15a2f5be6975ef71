"""`genrl data geneval --out DIR` / `genrl data ocr --out DIR`: write the prompt sets the shipped SD3.5 / FLUX
recipes read (genrl/promptgen/). GenEval: DIR/train_metadata.jsonl and DIR/test_metadata.jsonl (one GenEval
metadata row per line, with its "prompt"); OCR: DIR/train.txt and DIR/test.txt (one prompt per line, target text
in double quotes). The default --out is where the configs look (dataset/geneval, dataset/ocr). A directory that
exists and is not empty is refused; files are written to a temporary name and renamed.

PickScore's prompts (Pick-a-Pic) are a human-written dataset and cannot be generated: use the Flow-GRPO
repository's dataset/pickscore/{train,test}.txt, or any text file of prompts with data.prompts=FILE."""

from __future__ import annotations

import argparse
import json
import os

from genrl.cli import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=["geneval", "ocr"], help="which prompt set")
    p.add_argument("--out", default=None, help="output directory (default: dataset/geneval or dataset/ocr)")
    p.add_argument("--train", type=int, default=None, help="training prompts (default: geneval 20000, ocr 20000)")
    p.add_argument("--test", type=int, default=None, help="test prompts (default: geneval 553, ocr 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--categories", default=None,
                   help="geneval: comma-separated subset of single_object,two_object,counting,colors,position,"
                        "color_attr (default: all six)")
    p.add_argument("--counts", default="2,3,4", help="geneval counting prompts: the counts (2..10; GenEval: 2,3,4)")
    p.add_argument("--max-words", type=int, default=3, help="ocr: at most this many words per text (1..5)")


def _write_atomic(path: str, lines: list[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)


def run(args) -> int:
    out = args.out or os.path.join("dataset", args.name)
    if os.path.isfile(out) or (os.path.isdir(out) and os.listdir(out)):
        raise UserError(f"--out {out} already exists and is not empty; choose a new directory (nothing was written)")
    if args.name == "geneval":
        from genrl.promptgen.geneval import generate

        try:
            counts = tuple(int(c) for c in args.counts.split(",") if c.strip())
        except ValueError:
            raise UserError(f"--counts must be comma-separated integers, got {args.counts!r}") from None
        cats = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
        train, test = generate(20000 if args.train is None else args.train, 553 if args.test is None else args.test,
                               cats, counts, args.seed)
        files = {"train_metadata.jsonl": [json.dumps(r) for r in train],
                 "test_metadata.jsonl": [json.dumps(r) for r in test]}
    else:
        from genrl.promptgen.ocr import generate

        train, test = generate(20000 if args.train is None else args.train, 1000 if args.test is None else args.test,
                               args.seed, args.max_words)
        files = {"train.txt": train, "test.txt": test}
    os.makedirs(out, exist_ok=True)
    for name, lines in files.items():
        _write_atomic(os.path.join(out, name), lines)
    print(f"genrl data {args.name}: wrote {', '.join(f'{out}/{n} ({len(v)} prompts)' for n, v in files.items())}")
    return 0
