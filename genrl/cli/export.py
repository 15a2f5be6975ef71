"""`genrl export --run RUN_DIR --out DIR [--merge] [--checkpoint NAME] [--raw] [--dtype bf16]`

Without --merge: the run's trained LoRA in the diffusers LoRA format (DIR/pytorch_lora_weights.safetensors), so
    StableDiffusion3Pipeline.from_pretrained(base).load_lora_weights(DIR)      # or FluxPipeline
works unchanged. With --merge: a full pipeline directory (the base pipeline with W + (alpha/r) B A fused into the
transformer by diffusers' own load_lora_weights + fuse_lora), loadable with `<Pipeline>.from_pretrained(DIR)`.
Full fine-tuning runs (model.lora_rank=0) export the trained transformer (DIR/transformer) or, merged, the base
pipeline with that transformer. Shapes-world runs export their LoRA as saved (for `genrl sample --lora DIR`) or,
merged, a ShapesPipeline directory (for `genrl eval --model DIR`).

The weights are the checkpoint's exported ones (EMA weights when EMA is on, as used for eval); --raw exports the
raw (non-EMA) trainable weights instead. The default checkpoint is the run's latest.
"""

from __future__ import annotations

import json
import os
import shutil

from genrl.cli import UserError


def add_arguments(p) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a run directory written by genrl train")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must be empty or absent)")
    p.add_argument("--merge", action="store_true", help="write a full merged pipeline instead of the LoRA alone")
    p.add_argument("--checkpoint", metavar="NAME", help="checkpoint under RUN_DIR/checkpoints (default: latest)")
    p.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA weights")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="dtype of a merged pipeline (default: fp32)")


def _checkpoint(run_dir: str, name: str | None) -> str:
    from genrl.checkpoint import latest_checkpoint

    if name:
        path = name if os.path.isdir(name) else os.path.join(run_dir, "checkpoints", name)
        if not os.path.isdir(path):
            raise UserError(f"checkpoint {name!r} not found under {run_dir}/checkpoints; omit --checkpoint for latest")
        return path
    path = latest_checkpoint(run_dir)
    if path is None:
        raise UserError(f"{run_dir} has no checkpoint yet (checkpoints/ is empty); train first or pick another run")
    return path


def _raw_weights(cfg, ckpt: str, tmp: str) -> str:
    """Load the policy, put the raw trainable tensors in, save_trainable to tmp: the non-EMA export."""
    from safetensors.torch import load_file

    from genrl.loop import load_model

    policy = load_model(cfg)
    raw = load_file(os.path.join(ckpt, "trainable.safetensors"))
    with policy.use_trainable(raw):
        policy.save_trainable(tmp)
    return tmp


def run(args) -> int:
    from genrl.config import ConfigError, load_config

    run_dir = args.run
    if not os.path.isfile(os.path.join(run_dir, "config.yaml")):
        raise UserError(f"--run {run_dir}: not a run directory (no config.yaml); pass a directory made by genrl train")
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise UserError(f"--out {args.out} exists and is not empty; choose a new directory")
    try:
        cfg = load_config(os.path.join(run_dir, "config.yaml"))
    except ConfigError as e:
        raise UserError(str(e)) from None
    ckpt = _checkpoint(run_dir, args.checkpoint)
    weights = os.path.join(ckpt, "lora")
    if args.merge and os.path.isfile(os.path.join(weights, "condition.json")):
        raise UserError("--merge cannot carry a CTRL condition embedding (it is not part of the base architecture); "
                        "export without --merge and sample with `genrl sample --lora DIR --condition LABEL`")
    if args.raw:
        weights = _raw_weights(cfg, ckpt, os.path.join(args.out, ".raw-tmp"))
    if _shapes_weights(weights):
        try:
            _export_shapes(cfg.model.path, weights, args.out, args.merge, args.dtype)
        finally:
            shutil.rmtree(os.path.join(args.out, ".raw-tmp"), ignore_errors=True)
        what = "merged ShapesPipeline" if args.merge else "LoRA (genrl format)"
        print(f"genrl export: {what} from {ckpt} -> {args.out}")
        print(f"  use with: genrl eval --model {args.out}" if args.merge else
              f"  use with: genrl sample --model {cfg.model.path} --lora {args.out}")
        return 0
    info_path = os.path.join(weights, "genrl_trainable.json")
    if not os.path.isfile(info_path):
        raise UserError(f"{weights} was not written by the SD3/FLUX adapters (no genrl_trainable.json); export "
                        "supports StableDiffusion3Pipeline and FluxPipeline runs")
    with open(info_path) as f:
        info = json.load(f)
    try:
        if args.merge:
            _merge(cfg.model.path, weights, info, args.out, args.dtype)
        else:
            os.makedirs(args.out, exist_ok=True)
            for name in os.listdir(weights):
                src = os.path.join(weights, name)
                (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(args.out, name))
    finally:
        shutil.rmtree(os.path.join(args.out, ".raw-tmp"), ignore_errors=True)
    what = "merged pipeline" if args.merge else f"{info['kind']} weights (diffusers format)"
    print(f"genrl export: {what} from {ckpt} -> {args.out}")
    if not args.merge and info["kind"] == "lora":
        print(f"  load with: {info['pipeline']}.from_pretrained({cfg.model.path!r}).load_lora_weights({args.out!r})")
    elif args.merge:
        print(f"  load with: {info['pipeline']}.from_pretrained({args.out!r})")
    return 0


def _shapes_weights(weights: str) -> bool:
    meta = os.path.join(weights, "trainable.json")
    if not os.path.isfile(meta):
        return False
    with open(meta) as f:
        return json.load(f).get("family") == "shapes"


def _export_shapes(base: str, weights: str, out: str, merge: bool, dtype: str | None) -> None:
    """Shapes-world runs: the LoRA files as they are (for `genrl sample --lora`), or with --merge a ShapesPipeline
    whose transformer has W + (alpha/r) B A fused in (diffusers' fuse_lora), keeping the base's model_index extras
    (e.g. "prediction")."""
    if not merge:
        shutil.copytree(weights, out, dirs_exist_ok=True)
        return
    from genrl.policies.diffusers_common import parse_dtype
    from genrl.rlg import load_rlg_policy
    from genrl.shapes.model import save_pipeline

    policy = load_rlg_policy(base, weights)
    transformer = policy.transformer
    if policy.lora_rank > 0:
        transformer.fuse_lora()
        transformer.unload_lora()
    if dtype:
        transformer = transformer.to(parse_dtype(dtype, "--dtype"))
    with open(os.path.join(base, "model_index.json")) as f:
        index = json.load(f)
    standard = ("_class_name", "_genrl_version", "transformer", "text_encoder", "tokenizer", "resolution")
    save_pipeline(out, transformer, policy.text_encoder, policy.tokenizer,
                  extra={k: v for k, v in index.items() if k not in standard})


def _merge(base: str, weights: str, info: dict, out: str, dtype: str | None) -> None:
    import diffusers

    from genrl import lora as lora_lib
    from genrl.policies.diffusers_common import parse_dtype, pipeline_kwargs

    cls_name = info["pipeline"]
    if cls_name not in lora_lib.SUPPORTED_PIPELINES:
        raise UserError(f"--merge supports {', '.join(lora_lib.SUPPORTED_PIPELINES)}, not {cls_name!r}")
    kwargs = pipeline_kwargs(base, cls_name)
    if dtype:
        kwargs["dtype"] = parse_dtype(dtype, "--dtype")
    if info["kind"] == "lora":
        pipe = lora_lib.merged_pipeline(base, weights, cls_name, **kwargs)
    else:
        cls = getattr(diffusers, cls_name)
        tcls = {"StableDiffusion3Pipeline": "SD3Transformer2DModel", "FluxPipeline": "FluxTransformer2DModel",
                "WanPipeline": "WanTransformer3DModel"}
        transformer = getattr(diffusers, tcls[cls_name]).from_pretrained(
            os.path.join(weights, "transformer"), **({"dtype": kwargs["dtype"]} if dtype else {}))
        pipe = cls.from_pretrained(base, transformer=transformer, **kwargs)
    pipe.save_pretrained(out, safe_serialization=True)
    from genrl.policies import read_model_index

    extras = {k: v for k, v in read_model_index(base).items() if k.startswith("genrl_") or k == "prediction"}
    if extras:  # genrl's own keys (e.g. a pixel-space world model's) survive diffusers' save_pretrained
        with open(os.path.join(out, "model_index.json")) as f:
            index = json.load(f)
        with open(os.path.join(out, "model_index.json"), "w") as f:
            json.dump({**index, **extras}, f, indent=2)
