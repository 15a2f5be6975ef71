"""Text-model (masked diffusion LM) paths of `genrl sample`, `genrl eval` and `genrl pretrain dllm`.

The shared commands dispatch here when --model is a transformers model directory (config.json without
model_index.json). Decoding: the LLaDA sampler (samplers.masked_diffusion_sample), low-confidence remasking.

    genrl sample --model assets/puzzles-dllm --prompt "sudoku:1030|0200|3000|0001=" --num 4 --out DIR
    genrl eval --model assets/puzzles-dllm --split eval --out scores.json [--task sudoku|countdown]

`genrl eval` writes {"overall": {"score": mean verifier score (sudoku: fraction of blank cells right;
countdown: 1 if the target is hit), "solved": solve rate, "n": puzzles}, "protocol": {...}}.
"""

from __future__ import annotations

import json
import os

from genrl.cli import UserError, write_report


def add_text_arguments(p) -> None:
    g = p.add_argument_group("text models (masked diffusion LMs)")
    g.add_argument("--task", default="sudoku", choices=["sudoku", "countdown"], help="puzzles-world task")
    g.add_argument("--response-length", type=int, default=16, help="generated tokens")
    g.add_argument("--block-length", type=int, default=16, help="semi-autoregressive block size")
    g.add_argument("--diffusion-steps", type=int, default=16, help="denoising steps")
    g.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: 0 = greedy for eval, 0.7 for sample)")
    g.add_argument("--adapter", default=None, metavar="LORA_DIR",
                   help="a LoRA saved by genrl train (RUN_DIR/checkpoints/step_N/lora) on top of --model")
    g.add_argument("--trust-remote-code", action="store_true", help="run the model's own modelling code (LLaDA)")


def is_text_model(path: str) -> bool:
    from genrl.policies.dllm import is_transformers_dir

    return is_transformers_dir(path)


def _load(args):
    import torch

    from genrl.policies.dllm import TransformersDLLM

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    rank = 0
    if args.adapter:
        cfg_file = os.path.join(args.adapter, "adapter_config.json")
        if not os.path.isfile(cfg_file):
            raise UserError(f"--adapter {args.adapter} has no adapter_config.json (a LoRA saved by genrl train)")
        with open(cfg_file) as f:
            ac = json.load(f)
        rank, alpha = int(ac["r"]), float(ac["lora_alpha"])
    policy = TransformersDLLM.from_pretrained(args.model, lora_rank=rank, lora_alpha=alpha if rank else None,
                                              trust_remote_code=args.trust_remote_code)
    if rank:
        policy.load_trainable(args.adapter)
    return policy.eval()


def _gen_cfg(args, temperature: float):
    from genrl.masked_rollout import MaskedDLLMConfig, validate_generation

    cfg = MaskedDLLMConfig(response_length=args.response_length, block_length=args.block_length,
                           diffusion_steps=args.diffusion_steps, temperature=temperature, eval_temperature=temperature)
    try:
        validate_generation(cfg)
    except ValueError as e:
        raise UserError(str(e).replace("algorithm.", "--").replace("_", "-")) from None
    return cfg


def _meta_for(prompts: list[str]) -> tuple[str, list[dict]] | None:
    """(reward name, metadata) for prompts in the puzzles world's format, else None."""
    import re

    out, task = [], None
    for p in prompts:
        m = re.fullmatch(r"sudoku:(\d{4})\|(\d{4})\|(\d{4})\|(\d{4})=", p)
        c = re.fullmatch(r"countdown:(\d+(?:,\d+)*)>(\d+)=", p)
        if m:
            task, meta = "sudoku", {"puzzle": "".join(m.groups())}
        elif c:
            task, meta = "countdown", {"numbers": [int(x) for x in c.group(1).split(",")], "target": int(c.group(2))}
        else:
            return None
        out.append(meta)
    return task, out


def run_sample(args) -> int:
    import torch

    import rewards
    from genrl.masked_rollout import check_prompt_lengths, generate

    if args.num < 1:
        raise UserError("--num must be >= 1")
    temp = 0.7 if args.temperature is None else args.temperature
    cfg = _gen_cfg(args, temp)
    policy = _load(args)
    prompts = [args.prompt] * args.num
    check_prompt_lengths(policy, prompts, cfg.response_length, "--prompt")
    gen = torch.Generator().manual_seed(args.seed)
    _, _, texts = generate(policy, prompts, cfg, temp, gen)
    scores = None
    found = _meta_for(prompts)
    if found is not None:
        task, meta = found
        scores = rewards.load(task, **({"partial": True} if task == "sudoku" else {}))(texts, prompts, meta).scores
        print(f"{task} reward: mean {scores.mean():.3f}")
        scores = scores.tolist()
    os.makedirs(args.out, exist_ok=True)
    title = f'"{args.prompt}"  seed {args.seed}, temperature {temp}, {cfg.diffusion_steps} steps'
    path = policy.save_samples(texts, prompts, os.path.join(args.out, "samples"), scores, title=title)
    for t in texts:
        print(t)
    print(f"wrote {path}")
    return 0


def run_eval(args) -> int:
    import rewards
    from genrl.masked_rollout import check_prompt_lengths, generate
    from genrl.worlds.puzzles import task_prompts

    temp = 0.0 if args.temperature is None else args.temperature
    cfg = _gen_cfg(args, temp)
    policy = _load(args)
    prompts, meta, _ = task_prompts(f"{args.task}:{args.split}", "--split")
    check_prompt_lengths(policy, prompts, cfg.response_length, "--split")
    texts = []
    import torch

    gen = torch.Generator().manual_seed(args.seed) if temp > 0 else None
    for i in range(0, len(prompts), args.batch_size):
        texts += generate(policy, prompts[i:i + args.batch_size], cfg, temp, gen)[2]
    opts = {"partial": True} if args.task == "sudoku" else {}
    out = rewards.load(args.task, **opts)(texts, prompts, meta)
    solved = out.details["solved"].float()
    report = {"overall": {"score": float(out.scores.mean()), "solved": float(solved.mean()), "n": len(prompts)},
              "protocol": {"model": args.model, "adapter": args.adapter, "task": args.task, "split": args.split,
                           "temperature": temp, "response_length": cfg.response_length,
                           "block_length": cfg.block_length, "diffusion_steps": cfg.diffusion_steps,
                           "remasking": cfg.remasking, "seed": args.seed}}
    print(f"{args.task}:{args.split}  n={len(prompts)}  score {report['overall']['score']:.4f}  "
          f"solved {report['overall']['solved']:.4f}")
    write_report(args.out, report)
    return 0


def run_pretrain(args) -> int:
    """`genrl pretrain dllm --out DIR`: flags left at the shapes world's defaults take the dllm defaults
    (DLLMPretrainConfig: 30 minutes, batch 128, lr 1e-3, 1 thread)."""
    from genrl.shapes.pretrain import PretrainConfig
    from genrl.worlds.puzzles.pretrain import DLLMPretrainConfig, pretrain

    if args.minutes <= 0 or args.steps <= 0:
        raise UserError("--minutes and --steps must be positive")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} exists and is not a directory; choose another path")
    shapes, d = PretrainConfig(), DLLMPretrainConfig()

    def pick(name: str):
        v = getattr(args, name)
        return getattr(d, name) if v == getattr(shapes, name) else v

    cfg = DLLMPretrainConfig(minutes=pick("minutes"), steps=pick("steps"), seed=args.seed,
                             batch_size=pick("batch_size"), lr=pick("lr"), threads=pick("threads"))
    res = pretrain(args.out, cfg, log=lambda s: print(s, flush=True))
    print(f"pretrained {res['steps']} steps in {res['minutes']:.1f} min -> {args.out}: {res['final']}")
    return 0
