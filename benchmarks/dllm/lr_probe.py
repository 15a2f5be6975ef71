"""Learning-rate probe behind configs/dllm/*_sudoku.yaml (docs/dllm.md, Recipes): BGPO updates on ONE fixed rollout
batch of the shipped model, then how the ELBO of positive / negative-advantage responses moved and the greedy
solve rate on those puzzles.

    PYTHONPATH=. .venv/bin/python benchmarks/dllm/lr_probe.py --lr 1e-3 1e-4 3e-5

ELBO = mean of 16 stratified Monte-Carlo terms (genrl/masked_rollout.py, a sum over response tokens); advantages
are GRPO's per-group (r - mean) / (std + 1e-4) of the partial sudoku reward.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def probe(model: str, lr: float, puzzles_n: int, group: int, updates: int, temperature: float, seed: int) -> dict:
    import rewards
    from genrl.algorithms.base import Batch
    from genrl.algorithms.bgpo import bound_terms
    from genrl.masked_rollout import MaskedDLLMConfig, elbo_term, elbo_terms_nograd, generate, mc_masks, sequences
    from genrl.policies import load_policy
    from genrl.worlds.puzzles.sudoku import puzzles

    torch.manual_seed(seed)
    pol = load_policy(model, lora_rank=16)
    prompts, meta = (x[:puzzles_n] for x in puzzles("train"))
    cfg = MaskedDLLMConfig(temperature=temperature)
    partial, strict = rewards.load("sudoku", partial=True), rewards.load("sudoku", partial=False)

    def greedy_solve() -> float:
        pol.model.eval()
        return strict(generate(pol, prompts, cfg, 0.0, None)[2], prompts, meta).scores.mean().item()

    before = greedy_solve()
    g = torch.Generator().manual_seed(seed)
    rp, rm = [p for p in prompts for _ in range(group)], [m for m in meta for _ in range(group)]
    rows, resp, texts = generate(pol, rp, cfg, temperature, g)
    r = partial(texts, rp, rm).scores.view(puzzles_n, group)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True, unbiased=False) + 1e-4)).view(-1)
    b = Batch(prompts=rp, prompt_ids=rows, response=resp, mc_seed=torch.randint(0, 2**62, (len(rp),), generator=g))
    pol.model.eval()
    e0 = elbo_terms_nograd(pol, b, 16).mean(1)
    params = [p for p in pol.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for _ in range(updates):  # one update per micro-batch of 64, as configs/dllm/bgpo_sudoku.yaml's optimiser step
        pol.model.train()
        idx = torch.randperm(len(rp), generator=g)[:64]
        mb = Batch(prompts=[rp[i] for i in idx], prompt_ids=[rows[i] for i in idx], response=resp[idx],
                   mc_seed=b.mc_seed[idx])
        tokens, keys, p_len = sequences(pol, mb)
        masks, weights = mc_masks(mb.mc_seed, tokens.shape[1] - p_len, 16)
        opt.zero_grad()
        for j in range(16):
            ell = elbo_term(pol, tokens, keys, p_len, masks[j], weights[j])
            (-bound_terms(adv[idx], ell - ell.detach()).mean() / 16).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    pol.model.eval()
    d = elbo_terms_nograd(pol, b, 16).mean(1) - e0
    return {"lr": lr, "solve_before": before, "solve_after": greedy_solve(),
            "elbo_change_pos": d[adv > 0].mean().item(), "elbo_change_neg": d[adv < 0].mean().item(),
            "reward_mean": r.mean().item()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="assets/puzzles-dllm")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-3, 1e-4, 3e-5])
    ap.add_argument("--puzzles", type=int, default=32)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| lr | greedy solve before -> after | ELBO change, adv > 0 | ELBO change, adv < 0 |\n|---|---|---|---|")
    for lr in a.lr:
        r = probe(a.model, lr, a.puzzles, a.group, a.updates, a.temperature, a.seed)
        print(f"| {lr:g} | {r['solve_before']:.3f} -> {r['solve_after']:.3f} | {r['elbo_change_pos']:+.2f} | "
              f"{r['elbo_change_neg']:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
