"""benchmarks/shapes_methods.py's summary: seed-mean curves of the chosen metric and the race to Flow-GRPO's final."""

import importlib.util
import os
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    spec = importlib.util.spec_from_file_location("shapes_methods", os.path.join(ROOT, "benchmarks",
                                                                                 "shapes_methods.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(method, seed, scores, strict, step_s):
    curve = [{"step": 5 * i, "train_s": 5 * i * step_s, "images": 320 * i, "train_partial": s, "strict": t}
             for i, (s, t) in enumerate(zip(scores, strict))]
    return {"method": method, "seed": seed, "steps": 5 * (len(scores) - 1), "train_s": curve[-1]["train_s"],
            "images": curve[-1]["images"], "step_s": step_s, "rollout_frac": 0.5, "curve": curve}


def test_summary_races_to_grpo_final_on_the_chosen_metric(tmp_path):
    bench = _bench()
    results = [
        _run("grpo", 0, [0.50, 0.52, 0.56], [0.3, 0.3, 0.3], 4.0),
        _run("grpo", 1, [0.50, 0.54, 0.56], [0.3, 0.3, 0.4], 4.0),
        _run("nft", 0, [0.50, 0.58, 0.62], [0.3, 0.5, 0.5], 8.0),
        _run("nft", 1, [0.50, 0.56, 0.64], [0.3, 0.4, 0.6], 8.0),
    ]
    args = SimpleNamespace(metric="train_partial", minutes=1.0, seeds="0,1", eval_every=5, eval_prompts=8,
                           set=[], base=ROOT, threads=1, note="")
    s = bench.summarize(results, args)
    assert abs(s["grpo_final"] - 0.56) < 1e-9
    nft = s["rows"]["nft"]
    assert abs(nft["final"] - 0.63) < 1e-9 and nft["final_seeds"] == [0.62, 0.64]
    # NFT's mean curve passes 0.56 at its first eval (step 5, 40 s, 320 images); GRPO's at step 10 (40 s, 640)
    assert nft["reach_grpo_images"] == 320 and abs(nft["speedup_images"] - 2.0) < 1e-9
    assert abs(nft["speedup_wall"] - 1.0) < 1e-9
    assert abs(nft["other_final"] - 0.55) < 1e-9  # held-out strict, the other metric
    md, png = tmp_path / "b.md", tmp_path / "b.png"
    bench.write_markdown(s, results, args, str(md), str(png))
    bench.plot(s, str(png), args.metric)
    assert "| DiffusionNFT | 2 |" in md.read_text() and png.stat().st_size > 0
