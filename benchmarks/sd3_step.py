"""Flow-GRPO step time and peak memory on a tiny SD3 pipeline: genrl's per-forward overheads on vs off (CPU).

The workload is the SD3.5 PickScore recipe (configs/sd35/pickscore_grpo.yaml) at toy scale, the setting in which
the reference Flow-GRPO script and genrl measured the same time per step: 16 images per step (4 prompts x 4),
10 SDE steps, CFG 4.5 in rollout and training, 9 trained timesteps, KL beta 0.01 (a reference forward per trained
step), 2 optimizer updates per step, fp32, one thread. The pipeline is tests/tiny_pipelines.build_sd3 (two CLIP
encoders + T5, random weights) and the reward a tiny random CLIP scored by the real PickScore code.

Three arms, the same computation:

    legacy  what genrl did before (and the reference does): `transformer.dtype` on every forward (diffusers walks
            every module), `disable_adapters()` / `enable_adapters()` around every reference forward (a peft
            version check through importlib.metadata plus a walk over every module, twice), torch.no_grad for
            the rollout's and the reference's forwards, and peft's own LoRA Linear forward
    fast    genrl now: `module_dtype` (the first parameter's dtype), `genrl.lora.adapters_disabled` (the LoRA
            layers are found once; one flag per layer is flipped), torch.inference_mode for the rollout's and
            the reference's forwards (StepContext.no_autograd), and genrl.lean_lora's LoRA forward (the same ops
            without peft's per-call bookkeeping)
    compiled  fast with `run.compile: true` (torch.compile of the denoiser, genrl/compile.py): the same function,
            other rounding; its compile time is reported apart (the first step, not timed)

The arms train in one process, step by step interleaved (the order rotates each step), from the same weights and
seeds; the script checks that legacy and fast give identical rewards and losses at every step and reports how far
the compiled arm's rewards are from them. Peak memory: each arm again in a fresh process (resident set size
sampled every 2 ms, over 2 steps after a warm-up step, minus the RSS after imports).

    .venv/bin/python benchmarks/sd3_step.py --steps 8 --out benchmarks/sd3_step.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from markdown_out import publish  # noqa: E402

PROMPTS = [f"a photo of a {c} {a}" for c in ("red", "blue") for a in ("cat", "dog", "car", "tree")]
TOY = ["sample.resolution=32", "sample.group_size=4", "sample.groups_per_step=4", "sample.batch_size=8",
       "train.batch_size=8", "train.updates_per_step=2", "run.mixed_precision=no", "eval.every=0",
       "checkpoint.every=0", "run.tensorboard=false", "run.threads=1", "ema.every=1",
       "model.options={max_sequence_length:16}"]


def build_assets(root: str) -> tuple[str, str, str]:
    """The tiny SD3 pipeline (with T5), a tiny CLIP scorer (model + processor in one dir) and a prompt file."""
    import math

    import torch
    from tiny_pipelines import build_clip_tokenizer, build_sd3
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    sd3 = build_sd3(os.path.join(root, "sd3"), with_t5=True)
    clip = os.path.join(root, "clip")
    tok = build_clip_tokenizer(clip)
    v = len(tok)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, bos_token_id=v - 2, eos_token_id=v - 1, pad_token_id=v - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32,
    ))
    model.logit_scale.data.fill_(math.log(100.0))
    model.save_pretrained(clip)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(clip)
    prompts = os.path.join(root, "prompts.txt")
    with open(prompts, "w") as f:
        f.write("\n".join(PROMPTS) + "\n")
    return sd3, clip, prompts


@contextlib.contextmanager
def legacy_overheads():
    """Swap genrl's two per-forward shortcuts for the diffusers calls they replace (the legacy trainer's
    no-grad forwards use torch.no_grad: `make_trainer`)."""
    from genrl import lora
    from genrl.policies import sd3

    @contextlib.contextmanager
    def diffusers_disable(model):
        model.disable_adapters()
        try:
            yield
        finally:
            model.enable_adapters()

    saved = lora.adapters_disabled, sd3.module_dtype
    lora.adapters_disabled, sd3.module_dtype = diffusers_disable, lambda model: model.dtype
    try:
        yield
    finally:
        lora.adapters_disabled, sd3.module_dtype = saved


ARMS = ("legacy", "fast", "compiled")


def make_trainer(assets, run_dir: str, seed: int, arm: str):
    from genrl.config import load_config
    from genrl.loop import Trainer

    sd3, clip, prompts = assets
    cfg = load_config(os.path.join(ROOT, "configs", "sd35", "pickscore_grpo.yaml"), TOY + [
        f"model.path={sd3}", f"run.dir={run_dir}", f"data.prompts={prompts}", f"run.seed={seed}",
        f"reward_options={{pickscore: {{model: {clip}, processor: {clip}, local_files_only: true}}}}",
        f"run.compile={str(arm == 'compiled').lower()}"])
    tr = Trainer(cfg, progress=False)
    tr.inference_mode = arm != "legacy"  # legacy: torch.no_grad for the no-grad forwards (StepContext.no_autograd)
    if arm == "legacy":
        from genrl.lean_lora import make_lean

        make_lean(tr.policy.transformer, False)  # peft's own LoRA forward
    return tr


def one_step(tr, step: int) -> dict:
    """One loop step (rollout, reward, advantages, 2 updates); its times and a fingerprint of its results."""
    t0 = time.perf_counter()
    batch, _, _ = tr.dynamic_rollout(step)
    t1 = time.perf_counter()
    chosen, info = tr.compute_advantages(batch, step)
    batch.advantages = info.pop("adv")
    info.update(tr.algo.prepare_update(batch, tr._gather))
    t2 = time.perf_counter()
    m = tr.train_step(batch, chosen, step)
    t3 = time.perf_counter()
    tr.step = step + 1
    return {"rollout": t1 - t0, "update": t3 - t2, "step": t3 - t0,
            "reward": float(batch.rewards.sum()),
            "loss": (m["train/policy_loss"], m["train/kl_loss"], m["train/grad_norm"])}


def timing(args, assets, tmp) -> dict:
    import torch

    torch.set_num_threads(1)
    arms = {a: make_trainer(assets, os.path.join(tmp, a), args.seed, a) for a in ARMS}
    rows, compile_s = {a: [] for a in ARMS}, 0.0
    for s in range(args.steps + 1):  # step 0 is a warm-up (prompt caches, allocator, compilation), not timed
        for name in ARMS[s % 3:] + ARMS[:s % 3]:
            with legacy_overheads() if name == "legacy" else contextlib.nullcontext():
                r = one_step(arms[name], s)
            if s:
                rows[name].append(r)
            elif name == "compiled":
                compile_s = r["step"]
        a, b = rows["legacy"][-1:] or [None], rows["fast"][-1:] or [None]
        if s and (a[0]["reward"] != b[0]["reward"] or a[0]["loss"] != b[0]["loss"]):
            raise SystemExit(f"step {s}: legacy and fast differ (reward {a[0]['reward']} vs {b[0]['reward']}, "
                             f"loss {a[0]['loss']} vs {b[0]['loss']})")
    med = {k: {p: statistics.median(r[p] for r in v) for p in ("rollout", "update", "step")} for k, v in rows.items()}
    dev = max(abs(x["reward"] - y["reward"]) / 16 for x, y in zip(rows["fast"], rows["compiled"]))
    return {"median": med, "rewards": [r["reward"] for r in rows["fast"]], "compiled_dev": dev,
            "compile_s": compile_s}


def peak_rss(arm: str, args) -> float:
    """Peak RSS (MB) over steps 1-2 of `arm` in a fresh process, minus RSS after imports."""
    out = subprocess.run([sys.executable, __file__, "--_memory-arm", arm, "--seed", str(args.seed)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def _memory_child(arm: str, seed: int) -> None:
    import torch
    import torch._inductor.compile_fx  # noqa: F401  the compiler's own code, in every arm's baseline
    from memory_bench import PeakSampler, rss_bytes

    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="genrl-sd3step-mem-")
    assets = build_assets(tmp)
    base = rss_bytes()
    tr = make_trainer(assets, os.path.join(tmp, "run"), seed, arm)
    with legacy_overheads() if arm == "legacy" else contextlib.nullcontext():
        one_step(tr, 0)
        with PeakSampler() as ps:
            for s in (1, 2):
                one_step(tr, s)
    print(json.dumps({"peak_mb": (ps.peak - base) / 2**20}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8, help="timed steps per arm (after one warm-up step)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="append the results to this markdown file")
    ap.add_argument("--_memory-arm", dest="memory_arm", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_arm:
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
        _memory_child(args.memory_arm, args.seed)
        return 0
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"  # children: freed tensors leave the RSS at once
    tmp = tempfile.mkdtemp(prefix="genrl-sd3step-")
    res = timing(args, build_assets(tmp), tmp)
    mem = {arm: peak_rss(arm, args) for arm in ARMS}
    med = res["median"]
    lg = med["legacy"]
    import torch

    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M')} - {platform.machine()}, {os.cpu_count()} cores, 1 thread, "
        f"torch {torch.__version__}, {args.steps} timed steps per arm (interleaved), seed {args.seed}",
        "",
        "| arm | rollout (s) | update (s) | step (s) | step speed-up vs legacy | peak RSS (MB) | vs legacy |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in ARMS:
        m = med[a]
        lines.append(f"| {a} | {m['rollout']:.3f} | {m['update']:.3f} | {m['step']:.3f} | "
                     f"{lg['step'] / m['step']:.2f}x | {mem[a]:.0f} | {mem[a] / mem['legacy']:.3f} |")
    lines += [
        "",
        "Medians over the timed steps. Legacy and fast: rewards and losses identical at every step (summed step "
        f"rewards {', '.join(f'{r:.4f}' for r in res['rewards'])}). Compiled: per-image rewards within "
        f"{res['compiled_dev']:.1e} of them; its first step (compilation, empty or warm inductor cache) took "
        f"{res['compile_s']:.0f} s.",
        "",
    ]
    publish("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
