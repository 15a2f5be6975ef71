"""`genrl rlg-sweep`: reward against the RL-Guidance scale W, as a table and a plot.

    genrl rlg-sweep --model assets/shapes-base --lora runs/shapes-nft --scales 0,0.5,1,1.5,2,3 --out runs/rlg

For each W the same prompts are sampled from the same noise (--seed) with
v = v_base + W (v_finetuned - v_base) (CFG with --cfg-scale inside each first; see genrl/rlg.py) and scored with the
reward(s). W = 0 is the base model, W = 1 the fine-tuned one, 0 < W < 1 interpolates, W > 1 extrapolates.
Defaults come from the run's config.yaml when --lora is a run directory (eval prompts, eval steps, sigma shift,
CFG scale, rewards), else the shapes world's eval settings. Writes OUT/rlg_sweep.md (table), OUT/rlg_sweep.png
(reward vs W), OUT/rlg_sweep.json and one sample grid per W (OUT/samples_w<W>.png).
"""

from __future__ import annotations

import json
import os

DEFAULT_SCALES = "0,0.5,1,1.5,2,3"


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="base model: local pipeline directory or hub id")
    p.add_argument("--lora", required=True, metavar="RUN_DIR_OR_LORA",
                   help="a run directory (its latest checkpoint's LoRA) or a LoRA directory")
    p.add_argument("--scales", default=DEFAULT_SCALES, help=f"comma list of W (default {DEFAULT_SCALES})")
    p.add_argument("--prompts", help="prompt source: shapes:eval, shapes:train or a text file (default: the run's "
                                     "eval.prompts, else shapes:eval)")
    p.add_argument("--num-prompts", type=int, help="first N prompts (default: the run's eval.num_prompts, else 96)")
    p.add_argument("--reward", action="append", metavar="NAME[:WEIGHT]",
                   help="reward(s) to score with (default: the run's rewards, else shapes)")
    p.add_argument("--steps", type=int, help="Euler steps (default: the run's eval.steps, else 20)")
    p.add_argument("--shift", type=float,
                   help="sigma-grid shift (default: the run's sample.shift, else the model scheduler's own)")
    p.add_argument("--cfg-scale", type=float, help="text CFG inside each model (default: the run's, else 1.0)")
    p.add_argument("--seed", type=int, default=0, help="fixes the initial noise (the same at every W)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--out", required=True, help="output directory")


def _run_config(lora: str) -> dict:
    path = os.path.join(lora, "config.yaml")
    if not os.path.isfile(path):
        return {}
    import yaml

    with open(path) as f:
        return yaml.safe_load(f) or {}


def parse_scales(text: str) -> list[float]:
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--scales {text!r}: give a comma list of numbers, e.g. {DEFAULT_SCALES}") from None
    if not scales:
        raise ValueError(f"--scales is empty; give e.g. {DEFAULT_SCALES}")
    return scales


def sweep(model: str, lora: str, scales: list[float], prompts, metadata, reward_fn, steps: int = 20,
          shift: float | None = None, cfg_scale: float = 1.0, seed: int = 0, batch_size: int = 32, device: str = "cpu",
          out_dir: str | None = None, policy=None) -> list[dict]:
    """Mean reward (and every numeric reward detail, e.g. shapes/strict) for each RLG scale. Same noise for all."""
    import torch

    from genrl.rlg import load_rlg_policy, rlg_sample

    policy = policy or load_rlg_policy(model, lora, device=device)
    shape = tuple(policy.noise_shape(len(prompts)))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed))).to(device)
    rows = []
    for w in scales:
        sums: dict[str, list[float]] = {}
        first = None
        for i in range(0, len(prompts), batch_size):
            ps = list(prompts[i : i + batch_size])
            out = rlg_sample(policy, ps, w, cfg_scale, steps=steps, shift=shift, noise=noise[i : i + batch_size],
                             device=device)
            meta = metadata[i : i + batch_size] if metadata is not None else policy.metadata_for(ps)
            scored = reward_fn(out.images.cpu(), ps, meta)
            sums.setdefault("reward", []).extend(scored.scores.tolist())
            for k, v in scored.details.items():
                if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() == len(ps):
                    sums.setdefault(k, []).extend(v.float().tolist())
            if first is None:
                first = (out.images.cpu()[:16], ps[:16], scored.scores.tolist()[:16])
        row = {"scale": w, **{k: sum(v) / len(v) for k, v in sums.items()}, "n": len(prompts)}
        rows.append(row)
        if out_dir and first is not None:  # the adapter's own format: a PNG grid, or a GIF grid for clips
            policy.save_samples(list(first[0]), first[1], os.path.join(out_dir, f"samples_w{w:g}"), first[2],
                                title=f"RLG scale {w:g}: mean reward {row['reward']:.3f}")
    return rows


def write_outputs(rows: list[dict], out_dir: str, header: str) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k not in ("scale", "n")]
    md = [f"# RL Guidance sweep\n\n{header}\n", "| W | " + " | ".join(keys) + " |",
          "|---|" + "---|" * len(keys)]
    for r in rows:
        md.append(f"| {r['scale']:g} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    md_path = os.path.join(out_dir, "rlg_sweep.md")
    with open(md_path, "w") as f:
        f.write("\n".join(md) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["scale"] for r in rows]
    for k in keys[:4]:
        ax.plot(xs, [r[k] for r in rows], marker="o", label=k)
    for x, name in ((0.0, "base"), (1.0, "fine-tuned")):
        ax.axvline(x, color="gray", ls=":", lw=0.8)
        ax.text(x, ax.get_ylim()[1], name, fontsize=8, ha="center", va="bottom")
    ax.set_xlabel("RL-Guidance scale W")
    ax.set_ylabel("mean over prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(out_dir, "rlg_sweep.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    with open(os.path.join(out_dir, "rlg_sweep.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return md_path, png


def run(args) -> int:
    import torch

    import rewards
    from genrl.cli import UserError
    from genrl.cli.score import parse_rewards
    from genrl.data import load_prompts

    scales = parse_scales(args.scales)
    rc = _run_config(args.lora) if os.path.isdir(args.lora) else {}
    ev, sm = rc.get("eval", {}) or {}, rc.get("sample", {}) or {}
    source = args.prompts or ev.get("prompts") or "shapes:eval"
    n = args.num_prompts if args.num_prompts is not None else int(ev.get("num_prompts") or 96)
    steps = args.steps or int(ev.get("steps") or 20)
    # the run's sample.shift, else (a plain LoRA directory) the model scheduler's own shift
    shift = args.shift if args.shift is not None else (float(sm["shift"]) if sm.get("shift") is not None else None)
    cfg_scale = args.cfg_scale if args.cfg_scale is not None else float(
        ev.get("cfg_scale") if ev.get("cfg_scale") is not None else sm.get("cfg_scale", 1.0))
    weights = parse_rewards(args.reward) if args.reward else dict(rc.get("rewards") or {"shapes": 1.0})
    if steps < 1 or args.batch_size < 1:
        raise UserError("--steps and --batch-size must be >= 1")
    ps = load_prompts(source, "--prompts")
    if n > 0:
        ps = ps.subset(n)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    reward_fn = rewards.combine(weights)
    os.makedirs(args.out, exist_ok=True)
    rows = sweep(args.model, args.lora, scales, ps.prompts, ps.metadata, reward_fn, steps=steps, shift=shift,
                 cfg_scale=cfg_scale, seed=args.seed, batch_size=args.batch_size, device=device, out_dir=args.out)
    shift_s = "the model's own" if shift is None else f"{shift:g}"
    header = (f"Base `{args.model}`, fine-tuned `{args.lora}`; {len(ps.prompts)} prompts from `{source}`, "
              f"{steps}-step Euler (shift {shift_s}), CFG {cfg_scale:g} inside each model, seed {args.seed}; "
              f"rewards {weights}. W = 0: base, W = 1: fine-tuned.")
    md_path, png = write_outputs(rows, args.out, header)
    print(open(md_path).read())
    print(f"genrl rlg-sweep: wrote {md_path} and {png}")
    return 0
