"""Peak memory per process of one LoRA Flow-GRPO training micro-step on a stand-in for SD3.5-M's transformer (CPU).

The stand-in is an SD3Transformer2DModel with SD3.5-M's width (hidden 1536 = 24 heads x 64, T5 context dim 4096,
pooled dim 2048, 16 latent channels, qk RMS-norm) but few blocks, so it runs on a small CPU. One micro-step is
what the loop does per trained timestep: a CFG forward (cond + uncond rows concatenated), a backward into the
LoRA weights (reference targets, r 32 / alpha 64), an AdamW step. Four settings:

    plain       one process, full replica
    ckpt        one process, gradient checkpointing of every transformer block
    fsdp2       two processes (torchrun, gloo), the frozen base sharded by genrl.distributed.shard_policy
    fsdp2+ckpt  both

Memory is the process's resident set size (RSS, /proc/self/statm) sampled every 2 ms: `setup` is RSS after the
model, LoRA and sharding are in place minus RSS right after imports; `step peak` is the highest RSS during the
micro-step minus RSS after imports. Each setting runs in a fresh process (glibc's mmap threshold fixed at 128 KiB
so freed tensors leave the RSS at once); for fsdp2 the max over ranks is shown.

    python benchmarks/memory_bench.py                      # defaults: 2 blocks, hidden 1536, 256 px, batch 1
    python benchmarks/memory_bench.py --layers 4 --resolution 512 --batch 2 --json out.json

Results and the SD3.5-M / FLUX.1-dev estimates at the shipped settings: benchmarks/memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakSampler:
    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, rss_bytes(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())


def worker(args) -> dict:
    """One setting in this process (under torchrun for fsdp2). Returns the measurements of this rank."""
    import ctypes

    import torch
    from accelerate import Accelerator
    from diffusers import SD3Transformer2DModel
    from torch import nn

    from genrl import lora as lora_lib
    from genrl.distributed import shard_policy

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, int(os.environ.get("WORLD_SIZE", "1")))))
    acc = Accelerator(cpu=True)
    base = rss_bytes()
    torch.manual_seed(0)
    latent = args.resolution // 8
    transformer = SD3Transformer2DModel(
        sample_size=latent, patch_size=2, in_channels=16, num_layers=args.layers, attention_head_dim=64,
        num_attention_heads=args.hidden // 64, joint_attention_dim=4096, caption_projection_dim=args.hidden,
        pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=max(96, latent // 2), qk_norm="rms_norm",
    )
    lora_lib.add_lora(transformer, args.rank, 2 * args.rank, lora_lib.SD3_TARGETS)
    if args.ckpt:
        transformer.enable_gradient_checkpointing()
    transformer.train()

    class StandIn(nn.Module):  # what shard_policy needs from a policy
        def __init__(self, t):
            super().__init__()
            self.transformer = t

        def shard_units(self):
            return list(self.transformer.transformer_blocks)

        def trainable_parameters(self):
            return [p for p in self.transformer.parameters() if p.requires_grad]

    policy = StandIn(transformer)
    sharded = shard_policy(policy, acc) if args.fsdp else False
    if args.fsdp and not sharded:
        raise SystemExit("fsdp2 setting needs torchrun with ACCELERATE_USE_FSDP=true and 2+ processes")
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    params = policy.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=1e-4)
    rows = 2 * args.batch  # CFG: uncond + cond rows in one forward, as the loop does
    g = torch.Generator().manual_seed(acc.process_index)
    x = torch.randn(rows, 16, latent, latent, generator=g)
    ctx = torch.randn(rows, args.text_tokens, 4096, generator=g)
    pooled = torch.randn(rows, 2048, generator=g)
    t = torch.full((rows,), 700.0)
    n_base = sum(p.numel() for p in transformer.parameters() if not p.requires_grad)
    setup = rss_bytes() - base
    with PeakSampler() as ps:
        v = transformer(hidden_states=x, timestep=t, encoder_hidden_states=ctx, pooled_projections=pooled,
                        return_dict=False)[0]
        v.float().square().mean().backward()
        if acc.num_processes > 1:  # the loop's LoRA gradient all-reduce
            import torch.distributed as dist

            for p in params:
                dist.all_reduce(p.grad)
        opt.step()
    return {"rank": acc.process_index, "setup_mb": setup / 2**20, "peak_mb": (ps.peak - base) / 2**20,
            "base_params": n_base, "lora_params": sum(p.numel() for p in params), "sharded": sharded,
            "tokens": (latent // 2) ** 2 + args.text_tokens, "rows": rows}


SETTINGS = {"plain": (False, False), "ckpt": (True, False), "fsdp2": (False, True), "fsdp2+ckpt": (True, True)}


def run_setting(name: str, args) -> dict:
    ckpt, fsdp = SETTINGS[name]
    common = [os.path.abspath(__file__), "--worker", "--layers", str(args.layers), "--hidden", str(args.hidden),
              "--resolution", str(args.resolution), "--batch", str(args.batch), "--rank", str(args.rank),
              "--text-tokens", str(args.text_tokens)] + (["--ckpt"] if ckpt else []) + (["--fsdp"] if fsdp else [])
    # fixed mmap threshold: freed large tensors go back to the OS at once, so RSS tracks live tensors
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MALLOC_MMAP_THRESHOLD_": "131072"}
    if fsdp:
        env.update(ACCELERATE_USE_FSDP="true", FSDP_VERSION="2", OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] + common
    else:
        cmd = [sys.executable] + common
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(cmd + ["--out-dir", tmp], env=env, capture_output=True, text=True, cwd=REPO)
        rows = [json.load(open(os.path.join(tmp, f))) for f in sorted(os.listdir(tmp))]
    if out.returncode != 0 or not rows:
        raise SystemExit(f"{name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    worst = max(rows, key=lambda r: r["peak_mb"])
    res = {"setting": name, "processes": len(rows), **worst}
    print(f"  {name}: {res['processes']} process(es), setup {res['setup_mb']:.0f} MB, "
          f"step peak {res['peak_mb']:.0f} MB",
          flush=True)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=2, help="transformer blocks (SD3.5-M has 24)")
    p.add_argument("--hidden", type=int, default=1536, help="hidden size (SD3.5-M: 1536)")
    p.add_argument("--resolution", type=int, default=256, help="image size in px (latent = /8, tokens = (/16)^2)")
    p.add_argument("--batch", type=int, default=1, help="micro-batch (x2 rows for CFG)")
    p.add_argument("--rank", type=int, default=32, help="LoRA rank (alpha = 2 rank)")
    p.add_argument("--text-tokens", type=int, default=205, help="context tokens (SD3: 77 CLIP + 128 T5)")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of " + ",".join(SETTINGS))
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ckpt", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fsdp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        res = worker(args)
        with open(os.path.join(args.out_dir, f"rank{res['rank']}.json"), "w") as f:
            json.dump(res, f)
        return 0
    results = [run_setting(s, args) for s in args.settings.split(",")]
    r0 = results[0]
    print(f"stand-in: {args.layers} blocks, hidden {args.hidden}, {r0['base_params'] / 1e6:.0f}M frozen params "
          f"(fp32), LoRA r{args.rank} {r0['lora_params'] / 1e6:.2f}M, {args.resolution}px, {r0['tokens']} tokens, "
          f"{r0['rows']} rows (batch {args.batch} x CFG)")
    print("| setting | processes | setup MB / process | step peak MB / process |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['setting']} | {r['processes']} | {r['setup_mb']:.0f} | {r['peak_mb']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
