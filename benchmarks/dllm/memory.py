"""Peak memory of ONE update of BGPO vs the naive ELBO-GRPO at n_t = 1, 4, 16 (same model, batch, masks).

Each setting runs in a fresh process (`python benchmarks/dllm/memory.py --one ALGO NT`), with glibc's mmap
threshold fixed at 128 KiB (freed tensors leave the RSS at once). Two measurements of the update
(all yielded loss terms of one micro-batch, each back-propagated as the loop does):
  * graph_mib: the peak of the bytes held by autograd's saved tensors (torch.autograd.graph.saved_tensors_hooks;
    storages counted once, the model's own weights excluded): exactly the graph memory that grows with n_t;
  * rss_mib: process RSS sampled every 1 ms during the update, minus the RSS just before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import weakref

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SavedTensorMeter:
    """Live bytes of autograd-saved storages (deduplicated, parameters excluded) and their peak."""

    def __init__(self, exclude_ptrs: set[int]):
        self.exclude, self.live, self.cur, self.peak = exclude_ptrs, {}, 0, 0

    def _release(self, ptr: int) -> None:
        n, nbytes = self.live[ptr]
        if n == 1:
            del self.live[ptr]
            self.cur -= nbytes
        else:
            self.live[ptr] = (n - 1, nbytes)

    def pack(self, t):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr in self.exclude or st.nbytes() == 0:
            return t
        n, nbytes = self.live.get(ptr, (0, st.nbytes()))
        if n == 0:
            self.cur += nbytes
            self.peak = max(self.peak, self.cur)
        self.live[ptr] = (n + 1, nbytes)
        holder = _Holder(t)
        weakref.finalize(holder, self._release, ptr)
        return holder

    @staticmethod
    def unpack(x):
        return x.t if isinstance(x, _Holder) else x


class _Holder:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t):
        self.t = t


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(algo_name: str, n_t: int, model: str, batch: int, lora_rank: int) -> dict:
    import random

    import torch

    from genrl.algorithms import StepContext, get_algorithm
    from genrl.config import AdvantageConfig, SampleConfig
    from genrl.policies import load_policy
    from genrl.worlds.puzzles import task_prompts

    torch.set_num_threads(1)
    torch.manual_seed(0)
    pol = load_policy(model, lora_rank=lora_rank)
    cls = get_algorithm(algo_name)
    algo = cls(cls.Config(name=algo_name, mc_samples=n_t, temperature=1.0), SampleConfig(), AdvantageConfig())

    def ctx():
        return StepContext(step=0, update=0, generator=torch.Generator().manual_seed(0), rng=random.Random(0),
                           device=torch.device("cpu"))

    prompts = task_prompts("sudoku:train")[0][:batch]
    b = algo.rollout(pol, prompts, torch.arange(batch) // 4, ctx())
    b.advantages = torch.linspace(-1, 1, batch)
    pol.train()
    exclude = {p.untyped_storage().data_ptr() for p in pol.parameters()}
    meter = SavedTensorMeter(exclude)
    base, peak, stop = _rss(), [0], [False]

    def sample():
        while not stop[0]:
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.time()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        for loss, _ in algo.losses(pol, b, ctx()):
            loss.backward()
    secs = time.time() - t0
    stop[0] = True
    th.join()
    return {"algo": algo_name, "n_t": n_t, "graph_mib": meter.peak / 2**20, "rss_mib": (peak[0] - base) / 2**20,
            "update_s": secs, "batch": batch, "lora_rank": lora_rank}


def run_all(model: str, batch: int = 16, lora_rank: int = 16, nts=(1, 4, 16)) -> list[dict]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for algo in ("bgpo", "elbo_grpo"):
        for nt in nts:
            out = subprocess.run([sys.executable, __file__, "--one", algo, str(nt), "--model", model, "--batch",
                                  str(batch), "--lora-rank", str(lora_rank)], env=env, capture_output=True,
                                 text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=2, metavar=("ALGO", "NT"))
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "puzzles-dllm"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lora-rank", type=int, default=16)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.model, a.batch, a.lora_rank)))
    else:
        print(json.dumps(run_all(a.model, a.batch, a.lora_rank), indent=1))
