"""`genrl train [CONFIG.yaml] [KEY=VALUE ...]`, `genrl train --resume RUN_DIR [KEY=VALUE ...]`.

With no arguments: the CPU demo (configs/shapes/demo.yaml: Advantage Weighted Matching, the method that lifted the
shapes reward most steadily here, on the shapes world's base model, about 5.5 minutes; the longer run:
configs/shapes/awm.yaml; Flow-GRPO: configs/shapes/grpo.yaml).
Overrides use dotted keys (train.lr=1e-4) and accept whole mappings (rewards={ocr: 1.0}); see genrl.config.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from genrl.cli import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / "configs" / "shapes" / "demo.yaml"


def _config_keys() -> str:
    """The config sections and their keys (the `algorithm:` keys depend on algorithm.name)."""
    import dataclasses

    from genrl.config import Config

    lines = []
    for f in dataclasses.fields(Config):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        keys = [g.name for g in dataclasses.fields(default)] if dataclasses.is_dataclass(default) else []
        lines.append(f"  {f.name}: {', '.join(keys)}" if keys else f"  {f.name}")
    return "\n".join(lines)


def add_arguments(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("config keys (override any with KEY=VALUE, e.g. train.lr=1e-4 sample.group_size=16; the algorithm: "
                "keys depend on algorithm.name: grpo | nft | awm | ...):\n" + _config_keys() +
                "\n\nEvery key with its meaning and default: genrl/config.py and docs/training.md; shipped configs: "
                "configs/.")
    p.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [KEY=VALUE]",
                   help="a config file followed by overrides such as train.steps=50 rewards={shapes: 1.0}")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _repo_model_path(cfg) -> None:
    """Shipped configs name repo assets (assets/shapes-base) relative to the repo root: resolve such a path when
    it does not exist relative to the working directory, so they run from anywhere."""
    if not os.path.isabs(cfg.model.path) and not os.path.exists(cfg.model.path):
        candidate = REPO_ROOT / cfg.model.path
        if candidate.exists():
            cfg.model.path = str(candidate)


def _demo_paths(cfg) -> None:
    """The demo runs from any working directory: repo-relative model path, a fresh run dir."""
    _repo_model_path(cfg)
    if os.path.isdir(cfg.run.dir) and os.listdir(cfg.run.dir):
        cfg.run.dir = f"{cfg.run.dir}-{time.strftime('%Y%m%d-%H%M%S')}"


def run(args) -> int:
    from genrl.config import ConfigError, load_config, read_yaml

    positional = list(args.args)
    config_path = None
    if positional and "=" not in positional[0]:
        config_path = positional.pop(0)
    overrides = positional
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError(f"unexpected argument {bad[0]!r}: give one CONFIG.yaml first, then KEY=VALUE overrides")
    demo = False
    try:
        if args.resume:
            if config_path is not None:
                raise UserError("--resume takes the run directory's own config; pass only KEY=VALUE overrides")
            cfg_file = os.path.join(args.resume, "config.yaml")
            if not os.path.isfile(cfg_file):
                raise UserError(f"--resume {args.resume}: no config.yaml there; pass a run directory written by "
                                "genrl train")
            changed = [o.split("=", 1)[0] for o in overrides if o.split("=", 1)[0].split(".")[0] in ("model", "run")]
            if changed:
                raise UserError(f"{changed[0]} cannot change on --resume (the checkpoints hold this run's own model "
                                "and directory); start a new run with a new run.dir instead")
            raw = read_yaml(cfg_file)
            cfg = load_config(raw=raw, overrides=overrides)
            cfg.run.dir = args.resume
        else:
            demo = config_path is None
            cfg = load_config(str(DEMO_CONFIG) if demo else config_path, overrides)
            _repo_model_path(cfg)
            if demo:
                _demo_paths(cfg)
                if not os.path.exists(cfg.model.path):
                    raise UserError(f"the demo needs the shapes world's base model at {cfg.model.path}; restore it "
                                    "(git checkout assets/) or train one with `genrl pretrain shapes`")
    except ConfigError as e:
        raise UserError(str(e)) from None

    from genrl.loop import TrainingAborted, train

    if demo:
        print(f"genrl: CPU demo ({DEMO_CONFIG.relative_to(REPO_ROOT)}): {cfg.algorithm.name} on {cfg.model.path}, "
              f"{cfg.train.steps} steps -> {cfg.run.dir}")
    try:
        result = train(cfg, resume=bool(args.resume), progress=not args.no_progress)
    except TrainingAborted as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        import sys

        print(f"\ngenrl train: interrupted; resume with `genrl train --resume {cfg.run.dir}`", file=sys.stderr)
        return 130
    _report(result)
    return 0


def _report(result) -> None:
    from accelerate.state import PartialState

    if not PartialState().is_main_process:
        return
    first, last = result.first_eval, result.last_eval
    print(f"genrl: done, {result.steps_done} steps in {result.run_dir}")
    if first and last and "eval/reward_mean" in first:
        print(f"  eval reward: {first['eval/reward_mean']:.4f} (step {first['step']}) -> "
              f"{last['eval/reward_mean']:.4f} (step {last['step']})")
        for k in sorted(last):
            if k.startswith("eval/") and k not in ("eval/reward_mean", "eval/grid") and k in first:
                print(f"  {k}: {first[k]:.4f} -> {last[k]:.4f}")
    print(f"  samples (grids): {result.samples_dir}")
    if result.curves:
        print(f"  curves: {result.curves}")
    print(f"  metrics: {os.path.join(result.run_dir, 'metrics.jsonl')}; "
          f"checkpoints: {os.path.join(result.run_dir, 'checkpoints')}")
