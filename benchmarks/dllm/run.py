"""Benchmark for diffusion LMs (issue 12), one command:

    PYTHONPATH=. .venv/bin/python benchmarks/dllm/run.py                       # memory + solve rate
    PYTHONPATH=. .venv/bin/python benchmarks/dllm/run.py --part memory
    PYTHONPATH=. .venv/bin/python benchmarks/dllm/run.py --part solve --minutes 30 --seeds 0,1,2

(a) memory.py: peak memory of one update at n_t = 1, 4, 16 for BGPO and the naive ELBO-GRPO (autograd saved
    tensors and process RSS, fresh process per setting). Target: BGPO at n_t 16 <= 1.2x its n_t 1.
(b) solve.py: held-out solve rate vs training CPU time for BGPO n_t 16 / 4 and diffu-GRPO.
    Targets: BGPO +0.2 held-out solve rate within 30 CPU-minutes, above diffu-GRPO at equal CPU time.
Writes benchmarks/dllm.md and benchmarks/dllm.json (a part not run keeps its previous results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
JSON = os.path.join(ROOT, "benchmarks", "dllm.json")
MD = os.path.join(ROOT, "benchmarks", "dllm.md")


def _memory_md(rows: list[dict], meta: dict) -> list[str]:
    by = {(r["algo"], r["n_t"]): r for r in rows}
    out = ["## (a) Memory of one update against n_t", "",
           f"Model `{meta['model']}` (LoRA r {rows[0]['lora_rank']}), micro-batch {rows[0]['batch']} sudoku "
           "responses (27 prompt + 16 response tokens), 1 thread; one update = every yielded loss term of the "
           "micro-batch back-propagated as the loop does. Fresh process per setting "
           "(`python benchmarks/dllm/memory.py --one ALGO NT`).",
           "graph = peak bytes of autograd's saved tensors (saved_tensors_hooks, storages counted once, weights "
           "excluded): the memory that the n_t graphs take; RSS = process RSS sampled every 1 ms during the "
           "update minus RSS before it (glibc mmap threshold 128 KiB).", "",
           "| method | n_t | graph (MiB) | graph vs n_t=1 | RSS delta (MiB) | RSS vs n_t=1 | update (s) |",
           "|---|---|---|---|---|---|---|"]
    for (algo, nt), r in sorted(by.items(), key=lambda kv: (kv[0][0] != "bgpo", kv[0][1])):
        b = by[(algo, 1)]
        out.append(f"| {algo} | {nt} | {r['graph_mib']:.1f} | {r['graph_mib'] / b['graph_mib']:.2f}x | "
                   f"{r['rss_mib']:.1f} | {r['rss_mib'] / max(b['rss_mib'], 1e-9):.2f}x | {r['update_s']:.2f} |")
    return out + [""]


def _mean_std(xs: list[float]) -> str:
    t = torch.tensor(xs, dtype=torch.float64)
    return f"{t.mean():.3f} ± {t.std(unbiased=False):.3f}"


def _solve_md(res: dict) -> list[str]:
    out = ["## (b) Held-out solve rate against training CPU time", "", res["protocol"], "",
           "| method | seed | steps | CPU min | wall min | solved start | solved end | best | change | "
           "train puzzles solved start -> end |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        s0, s1 = r["curve"][0]["solved"], r["curve"][-1]["solved"]
        best = max(c["solved"] for c in r["curve"])
        t0, t1 = (r["curve"][i].get("train_solved", float("nan")) for i in (0, -1))
        out.append(f"| {r['method']} | {r['seed']} | {r['steps']} | {r['cpu_min']:.1f} | {r['wall_min']:.1f} | "
                   f"{s0:.3f} | {s1:.3f} | {best:.3f} | {s1 - s0:+.3f} | {t0:.3f} -> {t1:.3f} |")
    by: dict[str, list[dict]] = {}
    for r in res["runs"]:
        by.setdefault(r["method"], []).append(r)
    out += ["", "Over seeds (mean ± std):", "",
            "| method | seeds | CPU min | solved start | solved end | best | change |", "|---|---|---|---|---|---|---|"]
    for m, rs in by.items():
        out.append(f"| {m} | {len(rs)} | {sum(r['cpu_min'] for r in rs) / len(rs):.1f} | "
                   f"{_mean_std([r['curve'][0]['solved'] for r in rs])} | "
                   f"{_mean_std([r['curve'][-1]['solved'] for r in rs])} | "
                   f"{_mean_std([max(c['solved'] for c in r['curve']) for r in rs])} | "
                   f"{_mean_std([r['curve'][-1]['solved'] - r['curve'][0]['solved'] for r in rs])} |")
    out += ["", "Curves (step: CPU min, held-out solved / training puzzles solved):"]
    for r in res["runs"]:
        pts = ", ".join(f"{c['step']}: {c['cpu_min']:.1f}, {c['solved']:.3f} / "
                        f"{c.get('train_solved', float('nan')):.3f}" for c in r["curve"])
        out.append(f"- {r['method']} s{r['seed']}: {pts}")
    return out + [""]


def write(results: dict) -> None:
    with open(JSON, "w") as f:
        json.dump(results, f, indent=1)
    lines = ["# Diffusion LMs: BGPO memory and solve rate (benchmarks/dllm/run.py)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs; torch "
             f"{results.get('torch', '?')}. Numbers are from the runs written below; nothing is extrapolated.", ""]
    if "memory" in results:
        lines += _memory_md(results["memory"], results["memory_meta"])
    if "solve" in results:
        lines += _solve_md(results["solve"])
    with open(MD, "w") as f:
        f.write("\n".join(lines))


def _solve_serial(jobs, a) -> list[dict]:
    from solve import run_one

    return [run_one(m, s, a.minutes, a.eval_every, a.runs_dir, a.model, a.set, a.max_wall_minutes) for m, s in jobs]


def _solve_parallel(jobs, a) -> list[dict]:
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    os.makedirs(a.runs_dir, exist_ok=True)
    procs = []
    for m, s in jobs:
        log = open(os.path.join(a.runs_dir, f"{m}-s{s}.log"), "w")
        cmd = [sys.executable, os.path.join(HERE, "solve.py"), m, str(s), "--minutes", str(a.minutes),
               "--max-wall-minutes", str(a.max_wall_minutes), "--eval-every", str(a.eval_every),
               "--runs-dir", a.runs_dir, "--model", a.model, "--set", *a.set]
        procs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True), log))
    runs = []
    for p, log in procs:
        out, _ = p.communicate()
        log.close()
        line = [x for x in out.splitlines() if x.startswith("RESULT ")]
        if p.returncode != 0 or not line:
            raise RuntimeError(f"a solve run failed (see {log.name})")
        runs.append(json.loads(line[-1][len("RESULT "):]))
        print(out.strip().splitlines()[-2] if len(out.splitlines()) > 1 else "", flush=True)
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["all", "memory", "solve"], default="all")
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "puzzles-dllm"))
    ap.add_argument("--batch", type=int, default=16, help="memory: micro-batch")
    ap.add_argument("--minutes", type=float, default=30.0, help="solve: training CPU minutes per run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="bgpo_nt16,bgpo_nt4,diffu_grpo")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--runs-dir", default=os.path.join(ROOT, "runs", "bench-dllm"))
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides for every solve run")
    ap.add_argument("--parallel", action="store_true", help="solve: every (method, seed) in its own process")
    ap.add_argument("--max-wall-minutes", type=float, default=float("inf"), help="solve: wall-time cap per run")
    ap.add_argument("--add", action="store_true",
                    help="solve: keep the earlier runs (e.g. other seeds of the same protocol); a (method, seed) "
                         "run again replaces its old result")
    a = ap.parse_args(argv)
    results = json.load(open(JSON)) if os.path.isfile(JSON) else {}
    results["torch"] = torch.__version__
    rel = os.path.relpath(a.model, ROOT)
    if a.part in ("all", "memory"):
        from memory import run_all

        results["memory"] = run_all(a.model, a.batch)
        results["memory_meta"] = {"model": rel}
        write(results)
    if a.part in ("all", "solve"):
        jobs = [(m, int(s)) for s in a.seeds.split(",") for m in a.methods.split(",")]
        runs = _solve_parallel(jobs, a) if a.parallel else _solve_serial(jobs, a)
        cmd = (f"`PYTHONPATH=. python benchmarks/dllm/run.py --part solve --minutes {a.minutes:g} --seeds {a.seeds} "
               f"--methods {a.methods} --eval-every {a.eval_every}" + (" --parallel" if a.parallel else "")
               + (f" --max-wall-minutes {a.max_wall_minutes:g}" if a.max_wall_minutes != float("inf") else "")
               + (f" --set {' '.join(a.set)}" if a.set else "") + "`")
        protocol = (f"Command: {cmd}. Base model `{rel}`; configs/dllm/bgpo_sudoku.yaml "
                    "(n_t overridden) and configs/dllm/diffu_grpo_sudoku.yaml; budget = training CPU time "
                    "of the process (1 thread; evaluation excluded); eval = all 192 held-out puzzles, "
                    "greedy decoding, strict solve rate; beside it 192 fixed training puzzles (`eval.train_prompts`).")
        if a.add and "solve" in results:
            new = {(r["method"], r["seed"]) for r in runs}
            runs = [r for r in results["solve"]["runs"] if (r["method"], r["seed"]) not in new] + runs
            protocol = results["solve"]["protocol"] + f" Runs added by: {cmd}."
        order = a.methods.split(",")
        runs.sort(key=lambda r: (order.index(r["method"]) if r["method"] in order else len(order), r["seed"]))
        results["solve"] = {"protocol": protocol, "runs": runs}
        write(results)
    print(f"wrote {MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
