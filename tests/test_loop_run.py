"""The loop end to end on a tiny shapes model: artifacts, resume exactness, bad input, faults."""

import json
import os

import pytest
import torch
from loop_helpers import tiny_config, tiny_shapes_model
from safetensors.torch import load_file

import rewards
from genrl.cli import main as cli
from genrl.config import save_config
from genrl.loop import Trainer, TrainingAborted, train


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_shapes_model(str(tmp_path_factory.mktemp("tiny") / "shapes"))


def test_two_step_run_writes_every_artifact(model, tmp_path):
    run = tmp_path / "run"
    res = train(tiny_config(model, str(run), run={"tensorboard": True}), progress=False)
    assert res.steps_done == 2
    for f in ["config.yaml", "metrics.jsonl", "curves.png", "samples/step_000000.png", "samples/step_000002.png",
              "samples/before_after.png",
              "checkpoints/latest"]:
        assert (run / f).is_file(), f
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(run / "tensorboard"))
    ck = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert ck.name == "step_000002"
    for f in ["trainable.safetensors", "ema.safetensors", "optimizer.pt", "state.pt", "meta.json",
              "lora/lora.safetensors"]:
        assert (ck / f).is_file(), f
    assert not any(n.startswith(".tmp") for n in os.listdir(run / "checkpoints"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/reward_mean" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for key in ["wall_time", "samples_seen", "train/reward_std", "train/zero_std_ratio", "train/approx_kl",
                "train/clipfrac", "train/policy_loss", "train/kl_loss", "train/ratio_mean"]:
        assert key in train_rows[-1] or train_rows[-1]["train/updates"] == 0, key
    assert train_rows[-1]["samples_seen"] == 16
    evals = [r for r in rows if "eval/reward_mean" in r]
    assert [r["step"] for r in evals] == [0, 1, 2] and "eval/shapes/strict" in evals[0]
    # the exported LoRA loads back through the adapter
    from genrl.policies import load_policy

    pol = load_policy(model, lora_rank=4)
    pol.load_trainable(str(ck / "lora"))


@pytest.mark.slow
def test_resume_is_exact(model, tmp_path):
    straight = tmp_path / "straight"
    kw = {"checkpoint": {"every": 2}, "eval": {"every": 2}}
    train(tiny_config(model, str(straight), train={"steps": 4}, **kw), progress=False)
    split = tmp_path / "split"
    train(tiny_config(model, str(split), train={"steps": 2}, **kw), progress=False)
    # continue with the CLI, raising train.steps on resume
    assert cli(["train", "--resume", str(split), "train.steps=4", "--no-progress"]) == 0
    a = load_file(str(straight / "checkpoints" / "step_000004" / "trainable.safetensors"))
    b = load_file(str(split / "checkpoints" / "step_000004" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ea = load_file(str(straight / "checkpoints" / "step_000004" / "ema.safetensors"))
    eb = load_file(str(split / "checkpoints" / "step_000004" / "ema.safetensors"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    ra = [r for r in map(json.loads, (straight / "metrics.jsonl").read_text().splitlines()) if "train/reward_mean" in r]
    rb = [r for r in map(json.loads, (split / "metrics.jsonl").read_text().splitlines()) if "train/reward_mean" in r]
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    assert [r["train/reward_mean"] for r in ra] == [r["train/reward_mean"] for r in rb]
    cpu = [r["cpu_time"] for r in rb]  # process CPU seconds, carried over the resume (the CPU-minute budgets)
    assert cpu[0] > 0 and all(x < y for x, y in zip(cpu, cpu[1:]))


def test_auto_threads_resume_with_the_count_the_run_started_with(model, tmp_path, monkeypatch):
    """Thread counts can change CPU rounding, so an auto run (run.threads=0) resumes with its checkpointed count."""
    import genrl.threads

    before = torch.get_num_threads()
    run = tmp_path / "run"
    cfg = tiny_config(model, str(run), run={"threads": 0}, train={"steps": 1}, eval={"every": 0},
                      checkpoint={"every": 1})
    try:
        monkeypatch.setattr(genrl.threads, "auto_threads", lambda n=1: 2)
        train(cfg, progress=False)
        monkeypatch.setattr(genrl.threads, "auto_threads", lambda n=1: 1)  # the machine is busier now
        tr = Trainer(cfg, resume=True, progress=False)
        assert tr.threads == 2 and torch.get_num_threads() == 2
        fixed = tiny_config(model, str(run), run={"threads": 1}, train={"steps": 1}, eval={"every": 0})
        assert Trainer(fixed, resume=True, progress=False).threads == 1  # an explicit count is kept
    finally:
        torch.set_num_threads(before)


def test_cpu_budget_stops_with_eval_and_checkpoint(model, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(model, str(run), train={"steps": 50, "cpu_minutes": 1e-6},
                      eval={"every": 10}, checkpoint={"every": 10})
    res = train(cfg, progress=False)
    assert res.steps_done == 1  # the first step already spent the (tiny) budget
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/reward_mean" in r] == [0, 1]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000001"


def test_resume_after_kill_before_first_checkpoint_and_corrupt_tmp(model, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(model, str(run), train={"steps": 1}, eval={"every": 0})
    run.mkdir()
    save_config(cfg, str(run / "config.yaml"))  # a run killed before its first checkpoint
    (run / "checkpoints" / ".tmp-step_000001").mkdir(parents=True)  # a half-written checkpoint
    assert cli(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000001"


def _snapshot(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


@pytest.mark.parametrize(
    "override, message",
    [
        ("rewards={no_such_reward: 1.0}", "unknown reward 'no_such_reward'"),
        ("model.path=/nonexistent/model", "does not exist"),
        ("train.lrr=1", "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
        ("train.steps=two", "'train.steps' expects int"),
        ("data.prompts=EMPTY", "has no prompts"),
        ("algorithm.name=grpo", "already exists and is not empty"),
    ],
)
def test_bad_input_one_line_error_nothing_written(model, tmp_path, capsys, override, message):
    cfg_path = tmp_path / "c.yaml"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    run_dir = existing if override.startswith("algorithm") else tmp_path / "run"
    save_config(tiny_config(model, str(run_dir)), str(cfg_path))
    override = override.replace("EMPTY", str(empty))
    code = cli(["train", str(cfg_path), override, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    assert _snapshot(existing) == ["keep.txt"]


@rewards.register("test_nan_group")
class _NanForOnePrompt(rewards.Reward):
    """Shapes-free test reward: non-finite for one prompt's group, else the mean brightness."""

    name = "test_nan_group"
    input_format = "tensor"

    def __init__(self, all_nan: bool = False):
        self.all_nan = all_nan

    def score(self, samples, prompts, metadata):
        s = samples.mean(dim=(1, 2, 3))
        bad = torch.tensor([self.all_nan or p == prompts[0] for p in prompts])
        return rewards.RewardOutput(torch.where(bad, torch.full_like(s, float("nan")), s))


def test_nonfinite_rewards_drop_groups_then_abort(model, tmp_path):
    cfg = tiny_config(model, str(tmp_path / "a"), rewards={"test_nan_group": 1.0}, eval={"every": 0},
                      train={"steps": 1})
    tr = Trainer(cfg, progress=False)
    res = tr.run()
    row = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()][-1]
    assert res.steps_done == 1 and row["train/nonfinite_groups"] >= 1 and row["train/updates"] == 1
    cfg = tiny_config(model, str(tmp_path / "b"), rewards={"test_nan_group": 1.0}, eval={"every": 0},
                      reward_options={"test_nan_group": {"all_nan": True}})
    with pytest.raises(TrainingAborted, match="every group had a non-finite reward"):
        Trainer(cfg, progress=False).run()


def test_nonfinite_loss_skips_then_aborts(model, tmp_path):
    cfg = tiny_config(model, str(tmp_path / "run"), eval={"every": 0}, train={"steps": 3},
                      run={"max_nonfinite_in_row": 2})
    tr = Trainer(cfg, progress=False)
    before = {k: v.clone() for k, v in tr.policy.trainable_state().items()}
    real = tr.algo.losses

    def nan_losses(policy, mb, ctx):
        for loss, m in real(policy, mb, ctx):
            yield loss * float("nan"), m

    tr.algo.losses = nan_losses
    with pytest.raises(TrainingAborted, match="2 updates in a row"):
        tr.run()
    after = tr.policy.trainable_state()
    assert tr.skipped_updates == 2 and all(torch.equal(before[k], after[k]) for k in before)
    assert tr.step == 1  # step 0 done (skipped update), aborted during step 1


def test_failed_checkpoint_write_keeps_last_good(model, tmp_path, monkeypatch):
    from genrl import checkpoint as ck

    run = tmp_path / "run"
    tr = Trainer(tiny_config(model, str(run), train={"steps": 1}, eval={"every": 0}), progress=False)
    tr.run()
    good = run / "checkpoints" / "step_000001"
    before = load_file(str(good / "trainable.safetensors"))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(str(run), 2, policy=tr.policy, ema=tr.ema, optimizer_state=tr.optimizer.state_dict(),
                           state={})
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_000001"
    assert ck.latest_checkpoint(str(run)) == str(good)
    after = load_file(str(good / "trainable.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_ema_schedule():
    from genrl.ema import EMA

    ema = EMA({"w": torch.zeros(2)}, decay=0.9, every=2)
    assert not ema.step({"w": torch.ones(2)}, 1)  # not on an interval
    assert ema.step({"w": torch.ones(2)}, 2)  # d = min(3/12, 0.9) = 0.25 -> 0.75
    assert torch.allclose(ema.shadow["w"], torch.full((2,), 0.75))
    assert ema.effective_decay(1000) == 0.9


def test_ema_reference_cadence_fires_once_per_micro_batch():
    """Flow-GRPO: ema.step(params, global_step) after every micro-batch, applied when (global_step + 1) % every == 0;
    with 3 micro-batches per update and every=2 it applies 3 times with the weights after update 1."""
    from genrl.ema import EMA

    ref = torch.zeros(1)  # the reference's loop, written out
    theta, gs, d_applied = torch.zeros(1), 0, []
    for _update in range(3):
        for mb in range(3):
            if mb == 2:  # the last micro-batch syncs: optimizer step, then global_step += 1
                theta = theta + 1
                gs += 1
            if (gs + 1) % 2 == 0:
                d = min((1 + gs) / (10 + gs), 0.9)
                ref = d * ref + (1 - d) * theta
                d_applied.append(gs)
    assert d_applied == [1, 1, 1, 3]
    ema = EMA({"w": torch.zeros(1)}, decay=0.9, every=2, cadence="reference")
    theta, n = torch.zeros(1), 0
    for _update in range(3):  # genrl's loop: earlier micro-batches before the step, the last after it
        for _mb in range(1, 3):
            ema.step({"w": theta}, n, micro_batch=True)
        theta, n = theta + 1, n + 1
        assert not ema.step({"w": theta}, n)  # the per-update call is ignored in this cadence
        state = {"w": theta}
        ema.step(lambda s=state: s, n, micro_batch=True)
    torch.testing.assert_close(ema.shadow["w"], ref)
    with pytest.raises(ValueError, match="cadence"):
        EMA({"w": torch.zeros(1)}, cadence="often")


def test_eval_on_training_prompts_matches_scoring_them_as_the_eval_set(model, tmp_path):
    both = Trainer(tiny_config(model, str(tmp_path / "a"), eval={"train_prompts": 3}), progress=False)
    alone = Trainer(tiny_config(model, str(tmp_path / "b"), eval={"prompts": "shapes:train", "num_prompts": 3}),
                    progress=False)
    m_both, m_alone = both.evaluate(0), alone.evaluate(0)
    assert m_both["eval/train/reward_mean"] == m_alone["eval/reward_mean"]
    assert m_both["eval/train/shapes/strict"] == m_alone["eval/shapes/strict"]
    assert m_both["eval/reward_mean"] != m_alone["eval/reward_mean"]  # the held-out set is scored too
    assert "eval/grid" in m_both


def test_eval_scores_a_runs_lora(model, tmp_path, monkeypatch, capsys):
    """`genrl eval --lora RUN` scores the fine-tuned model, not the base; `--adapter` (text models') is refused."""
    import genrl.shapes.evaluate as evaluate_mod

    run = tmp_path / "run"
    train(tiny_config(model, str(run), eval={"every": 0}), progress=False)
    seen = {}
    real = evaluate_mod.evaluate

    def spy(policy, *a, **k):
        seen["lora_b"] = sum(float(p.abs().sum()) for n, p in policy.named_parameters() if "lora_B" in n)
        return real(policy, *a, **k)

    monkeypatch.setattr(evaluate_mod, "evaluate", spy)
    out = tmp_path / "scores.json"
    args = ["eval", "--model", model, "--split", "eval", "--per-category", "1", "--steps", "2", "--out", str(out)]
    assert cli([*args, "--lora", str(run)]) == 0
    assert seen["lora_b"] > 0  # LoRA B starts at zero: non-zero means the run's trained weights are loaded
    assert json.loads(out.read_text())["protocol"]["lora"] == str(run)
    out.unlink()
    assert cli([*args, "--adapter", str(run)]) == 2
    assert "--lora RUN_DIR_OR_LORA" in capsys.readouterr().err and not out.exists()
