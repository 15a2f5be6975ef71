"""CTRL (genrl/algorithms/ctrl.py) on tiny random models: the step KL and the DDIM flow step against hand-computed
cases; gradients reach the LoRA and the condition embedding but never its NULL row; truncation detaches what it
should; a 2-step run; exact resume; saving / loading the condition; bad input."""

from __future__ import annotations

import json
import math
import os
import random

import pytest
import torch
from loop_helpers import tiny_shapes_model
from tiny_pipelines import one_thread

import samplers
from genrl.algorithms import Batch, StepContext, get_algorithm
from genrl.algorithms.ctrl import ctrl_loss, detach_schedule, step_kl
from genrl.config import load_config
from genrl.loop import Trainer
from genrl.policies import load_policy
from genrl.policies.condition import attach_condition, get_condition, label_ids
from rewards.classifier import ImageClassifier

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
LABELS = ["large", "small"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctrl")
    model = tiny_shapes_model(str(root / "base"))
    torch.manual_seed(0)
    clf = ImageClassifier(LABELS, widths=(4, 4, 4), input_size=16)
    clf.save_pretrained(str(root / "clf"))
    return model, str(root / "clf")


def ctrl_raw(model: str, clf: str, run_dir: str, **over) -> dict:
    raw = {
        "model": {"path": model, "lora_rank": 4},
        "run": {"dir": run_dir, "seed": 3, "tensorboard": False},
        "sample": {"steps": 3, "method": "ddim", "noise_level": 1.0, "group_size": 2, "groups_per_step": 2,
                   "batch_size": 2},
        "advantage": {"filter_zero_std": False},
        "train": {"steps": 2, "batch_size": 2, "lr": 1e-2, "weight_decay": 0.1, "max_grad_norm": 5.0},
        "algorithm": {"name": "ctrl", "classifier": clf, "labels": LABELS, "embed_lr": 5e-2, "loss_coeff": 1.0,
                      "kl_weight": 0.01},
        "rewards": {"classifier": 1.0},
        "reward_options": {"classifier": {"path": clf}},
        "ema": {"enabled": False},
        "eval": {"every": 0},
        "checkpoint": {"every": 0},
    }
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v}
    return raw


# ---- math -----------------------------------------------------------------------------------------------------
def test_step_kl_hand_computed():
    m1 = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])  # [B=2, 1, 2]
    m0 = torch.tensor([[[0.0, 0.0]], [[3.0, 0.0]]])
    std = torch.tensor([[[0.5]], [[2.0]]])
    # sample 0: mean((1, 4) / (2 * 0.25)) = mean(2, 8) = 5; sample 1: mean((9, 0) / 8) = 0.5625
    assert torch.allclose(step_kl(m1, m0, std), torch.tensor([5.0, 0.5625]))
    assert torch.equal(step_kl(m1, m0, torch.zeros_like(std)), torch.zeros(2))  # deterministic step: no KL
    loss, m = ctrl_loss(torch.log(torch.tensor([0.5, 0.25])), torch.tensor([1.0, 3.0]), 0.1, 0.01)
    want = 0.1 * (-math.log(0.5 + 1e-6) - math.log(0.25 + 1e-6)) / 2 + 0.01 * 2.0
    assert abs(loss.item() - want) < 1e-6 and abs(m["kl"] - 2.0) < 1e-9


def test_ddim_flow_step_is_the_ddpm_posterior():
    x, v = torch.randn(3, 4), torch.randn(3, 4)
    t, s = 0.5, 0.25
    mean, std = samplers.sde_mean_std(v, x, t, s, kind="ddim", noise_level=1.0)
    # alpha = 1 - t, sigma = t: posterior std^2 = s^2 (1 - (alpha_t sigma_s / (alpha_s sigma_t))^2)
    want_std = s * math.sqrt(1 - ((0.5 * 0.25) / (0.75 * 0.5)) ** 2)
    assert torch.allclose(std, torch.full_like(std, want_std))
    x0, eps = x - t * v, x + (1 - t) * v
    assert torch.allclose(mean, (1 - s) * x0 + math.sqrt(s**2 - want_std**2) * eps, atol=1e-6)
    mean1, std1 = samplers.sde_mean_std(v, x, 1.0, s, kind="ddim", noise_level=1.0)  # from pure noise: ancestral
    assert torch.allclose(std1, torch.full_like(std1, s)) and torch.allclose(mean1, (1 - s) * (x - v))
    m0, s0 = samplers.sde_mean_std(v, x, t, 0.0, kind="ddim", noise_level=1.0)
    assert torch.equal(s0, torch.zeros_like(s0)) and torch.allclose(m0, x0)


def test_detach_schedule_probabilities():
    rng = random.Random(0)
    counts = torch.zeros(4)
    for _ in range(4000):
        counts += torch.tensor(detach_schedule(4, 0, 4, rng), dtype=torch.float)
    # P(step i differentiated) = P(K <= i) = (i + 1) / 5
    assert torch.allclose(counts / 4000, torch.tensor([0.2, 0.4, 0.6, 0.8]), atol=0.03)


# ---- gradients and truncation -----------------------------------------------------------------------------------
def _algo_and_batch(tiny, cfg_scale=1.0):
    model, clf = tiny
    cfg = load_config(raw=ctrl_raw(model, clf, "/nonexistent", sample={"cfg_scale": cfg_scale}))
    algo = get_algorithm("ctrl")(cfg.algorithm, cfg.sample, cfg.advantage)
    torch.manual_seed(0)
    policy = load_policy(model, lora_rank=4)
    algo.configure_policy(policy)
    with torch.no_grad():  # a non-zero embedding and LoRA so every path carries gradient
        emb = get_condition(policy.transformer)
        emb.weight[:2].normal_()
        for n, p in policy.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    ctx = StepContext(0, 0, torch.Generator().manual_seed(1), random.Random(1), torch.device("cpu"))
    b = algo.rollout(policy, ["a photo of a circle", "a photo of two squares"], torch.arange(2), ctx)
    return algo, policy, b, ctx


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_gradient_reaches_lora_and_embedding_not_null(tiny, cfg_scale):
    algo, policy, b, ctx = _algo_and_batch(tiny, cfg_scale)
    b.labels = torch.tensor([0, 1])
    x0, kl, _ = algo.differentiable_rollout(policy, b, ctx, schedule=[True, True, True])
    logp = algo.classifier.log_probs(policy.decode(x0))
    (-logp.gather(1, b.labels[:, None]).sum() + kl.sum()).backward()
    w = get_condition(policy.transformer).weight
    assert w.grad[0].abs().sum() > 0 and w.grad[1].abs().sum() > 0
    assert torch.equal(w.grad[2], torch.zeros_like(w.grad[2]))  # NULL row (the CFG negative with cfg 3)
    lora = [p for n, p in policy.transformer.named_parameters() if "lora_A" in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    groups = algo.param_groups(policy, policy.trainable_parameters(), 1e-3)
    assert groups[1]["params"] == [w] and groups[1]["lr"] == algo.config.embed_lr and len(groups[0]["params"]) > 0


def test_condition_labels_map_into_a_classifier_with_a_reject_class(tiny, tmp_path, monkeypatch):
    """Condition labels in another order than the classifier's classes, plus a class no label names: the loss
    scores each image's requested label, the reject class only takes probability away."""
    model, _ = tiny
    torch.manual_seed(0)
    ImageClassifier(["small", "malformed", "large"], widths=(4, 4, 4), input_size=16).save_pretrained(
        str(tmp_path / "clf3"))
    cfg = load_config(raw=ctrl_raw(model, str(tmp_path / "clf3"), "/nonexistent"))
    algo = get_algorithm("ctrl")(cfg.algorithm, cfg.sample, cfg.advantage)
    assert algo.labels == LABELS and algo.clf_index.tolist() == [2, 0]
    logp = torch.log(torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    rollout = (torch.zeros(2, 3, 16, 16), torch.zeros(2), [])
    monkeypatch.setattr(algo, "differentiable_rollout", lambda p, mb, c: rollout)
    monkeypatch.setattr(algo.classifier, "log_probs", lambda im: logp)
    policy = type("P", (), {"decode": staticmethod(lambda x: x)})()
    mb = Batch(prompts=["a", "b"], labels=torch.tensor([0, 1]))  # large, small
    loss, _ = algo.loss(policy, mb, None)
    assert loss.item() == pytest.approx(-(math.log(0.7 + 1e-6) + math.log(0.6 + 1e-6)) / 2)


def test_truncation_detaches_model_outputs_but_keeps_the_path(tiny, monkeypatch):
    algo, policy, b, ctx = _algo_and_batch(tiny)
    calls = []
    orig = policy.velocity

    def spy(x, sigma, cond):
        calls.append(torch.is_grad_enabled())
        return orig(x, sigma, cond)

    monkeypatch.setattr(policy, "velocity", spy)
    x0, kl, _ = algo.differentiable_rollout(policy, b, ctx, schedule=[False, False, True])
    # steps 0 and 1: both models without grad; step 2: both with grad, checkpointed
    assert calls == [False, False, False, False, True, True]
    (x0.sum() + kl.sum()).backward()
    # backward recomputes the fine-tuned call only: x_2 carries no gradient (steps 0, 1 detached), so the frozen
    # base's output has no path to a trainable tensor
    assert calls[6:] == [True]
    # only step 0 differentiated: the gradient still reaches the LoRA through the later (detached-output) steps
    policy.zero_grad()
    x0, kl, _ = algo.differentiable_rollout(policy, b, ctx, schedule=[True, False, False])
    assert x0.requires_grad
    x0.sum().backward()
    lora = [p for n, p in policy.transformer.named_parameters() if "lora_A" in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    # nothing differentiated: no graph at all
    x0, kl, _ = algo.differentiable_rollout(policy, b, ctx, schedule=[False, False, False])
    assert not x0.requires_grad and not kl.requires_grad


def test_base_has_no_condition_and_embedding_starts_at_zero(tiny):
    model, _ = tiny
    policy = load_policy(model, lora_rank=4)
    x, cond = torch.randn(2, 3, 16, 16), policy.encode(["a photo of a circle"] * 2)
    v0 = policy.velocity(x, torch.tensor(0.5), cond)
    attach_condition(policy.transformer, LABELS)
    c = {**cond, "condition": label_ids(policy.transformer, ["small", "large"])}
    assert torch.equal(policy.velocity(x, torch.tensor(0.5), c), v0)  # zero-initialised: exactly the base
    with torch.no_grad():
        get_condition(policy.transformer).weight[:2] += 1.0
    assert not torch.allclose(policy.velocity(x, torch.tensor(0.5), c), v0)
    with policy.disable_adapter():
        assert torch.equal(policy.velocity(x, torch.tensor(0.5), c), v0)


# ---- the loop -----------------------------------------------------------------------------------------------------
def test_ctrl_two_step_run_and_sample_cli(tiny, tmp_path):
    from genrl.cli import main as cli

    model, clf = tiny
    run_dir = str(tmp_path / "run")
    raw = ctrl_raw(model, clf, run_dir, eval={"every": 2, "num_prompts": 2, "steps": 2, "batch_size": 2,
                                              "grid_images": 2, "use_ema": False},
                   # the rollout reward is 0 by design (the reward is in the loss): never an idle step
                   run={"max_idle_steps": 1})
    trainer = Trainer(load_config(raw=raw), progress=False)
    emb = get_condition(trainer.policy.transformer)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-2, 5e-2]
    res = trainer.run()
    assert res.steps_done == 2
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    tr = [r for r in rows if "train/loss" in r]
    assert len(tr) == 2 and all(math.isfinite(r["train/kl"]) and r["train/kl"] >= 0 for r in tr)
    assert tr[0]["train/kl"] == 0.0  # the first micro-batch runs the untouched model: exactly the base
    assert "eval/classifier" in res.last_eval  # eval metadata carries the requested labels
    assert emb.weight[:2].abs().sum() > 0 and torch.equal(emb.weight[2], torch.zeros_like(emb.weight[2]))
    lora_dir = os.path.join(run_dir, "checkpoints", "step_000002", "lora")
    assert json.load(open(os.path.join(lora_dir, "condition.json")))["labels"] == LABELS
    # loaded back: the same embedding; `genrl sample --condition` writes PNGs; a wrong label writes nothing
    pol = load_policy(model, lora_rank=4)
    pol.load_trainable(lora_dir)
    assert torch.equal(get_condition(pol.transformer).weight, emb.weight.detach())
    out = tmp_path / "samples"
    args = ["sample", "--model", model, "--lora", run_dir, "--prompt", "a photo of a circle", "--num", "2",
            "--steps", "2", "--seed", "0", "--out"]
    assert cli(args + [str(out), "--condition", "small"]) == 0
    assert sorted(os.listdir(out)) == ["grid.png", "sample_00.png", "sample_01.png"]
    assert cli(args + [str(tmp_path / "bad"), "--condition", "medium"]) == 2
    assert not os.path.exists(tmp_path / "bad")
    # the before/after report: every prompt with every label, base vs fine-tuned, and the grid (rows = labels)
    from genrl.shapes.ctrl_report import grid, report

    res, art = report(model, run_dir, num_prompts=2, steps=2)
    assert set(art["images"]) == {"before", *LABELS} and 0 <= res["after"]["label_acc"] <= 1
    assert res["before/small"]["strict"] == res["before/large"]["strict"]  # the base ignores the label
    assert os.path.isfile(grid(art["images"], art["prompts"], LABELS, str(tmp_path / "g.png"), cols=2))
    # guidance over the condition changes the conditioned images only (the seeded SDE base images are identical)
    g0, art_0 = report(model, run_dir, num_prompts=2, steps=2, method="ddim", noise_level=1.0)
    g, art_g = report(model, run_dir, num_prompts=2, steps=2, condition_scale=3.0, method="ddim", noise_level=1.0)
    assert g["condition_scale"] == 3.0 and g["method"] == "ddim" and g0["condition_scale"] is None
    assert torch.equal(art_0["images"]["before"], art_g["images"]["before"])
    assert not torch.equal(art_0["images"]["small"], art_g["images"]["small"])
    assert not torch.allclose(art_0["images"]["before"], art["images"]["before"], atol=1e-3)  # SDE != ODE


@pytest.mark.slow
def test_ctrl_resume_is_exact(tiny, tmp_path):
    from safetensors.torch import load_file

    from genrl.cli import main as cli
    from genrl.loop import train

    model, clf = tiny
    kw = {"checkpoint": {"every": 1}}
    train(load_config(raw=ctrl_raw(model, clf, str(tmp_path / "a"), train={"steps": 2}, **kw)), progress=False)
    train(load_config(raw=ctrl_raw(model, clf, str(tmp_path / "b"), train={"steps": 1}, **kw)), progress=False)
    assert cli(["train", "--resume", str(tmp_path / "b"), "train.steps=2", "--no-progress"]) == 0
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000002" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000002" / "trainable.safetensors"))
    assert any("genrl_condition" in k for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_one_line_errors(tiny, tmp_path):
    model, clf = tiny
    run = tmp_path / "r"
    with pytest.raises(ValueError, match="classes of the classifier.*unknown: \\['huge'\\]"):
        Trainer(load_config(raw=ctrl_raw(model, clf, str(run), algorithm={"labels": ["small", "huge"]})))
    with pytest.raises(ValueError, match="filter_zero_std"):
        Trainer(load_config(raw=ctrl_raw(model, clf, str(run), advantage={"filter_zero_std": True})))
    with pytest.raises(ValueError, match="sample.method"):
        Trainer(load_config(raw=ctrl_raw(model, clf, str(run), sample={"method": "euler", "noise_level": 0.0})))
    assert not os.path.exists(run)
    policy = load_policy(model, lora_rank=4)
    attach_condition(policy.transformer, LABELS)
    with pytest.raises(ValueError, match="not in this model's trained label set"):
        label_ids(policy.transformer, ["medium"])
    b = Batch(prompts=["x"])
    assert "labels" not in b


def test_condition_guidance_factory(tiny):
    from genrl.policies.condition import condition_factory

    model, _ = tiny
    policy = load_policy(model, lora_rank=4)
    emb = attach_condition(policy.transformer, LABELS)
    with torch.no_grad():
        emb.weight[:2].normal_()
    x, s = torch.randn(2, 3, 16, 16), torch.tensor(0.6)
    cond, uncond = policy.encode(["a photo of a circle"] * 2), policy.encode([""])
    with torch.no_grad():
        v_y = policy.velocity(x, s, {**cond, "condition": label_ids(policy.transformer, ["small"] * 2)})
        v_null = policy.velocity(x, s, {**cond, "condition": label_ids(policy.transformer, [None] * 2)})
        assert torch.allclose(condition_factory("small")(policy, cond, uncond)(x, s), v_y, atol=1e-6)
        # guidance over the condition only: v(c, NULL) + W (v(c, y) - v(c, NULL))
        g = condition_factory("small", condition_scale=2.0)(policy, cond, uncond)(x, s)
        assert torch.allclose(g, v_null + 2.0 * (v_y - v_null), atol=1e-5)
        assert torch.allclose(condition_factory("small", condition_scale=0.0)(policy, cond, uncond)(x, s), v_null,
                              atol=1e-6)


# ---- tuned_min_sigma: the fine-tuned model acts only at the noisy steps -----------------------------------------
def test_min_sigma_gate_in_the_rollout_the_factory_and_condition_json(tiny, tmp_path, monkeypatch):
    from genrl.policies.condition import condition_factory, load_condition, save_condition

    algo, policy, b, ctx = _algo_and_batch(tiny)  # sigmas 1, 2/3, 1/3, 0 (3 steps)
    get_condition(policy.transformer).min_sigma = 0.5  # step 0 (sigma 1) and step 1 (2/3) tuned, step 2 the base
    b.labels = torch.tensor([0, 1])
    per_step = []
    orig_kl = step_kl
    monkeypatch.setattr("genrl.algorithms.ctrl.step_kl", lambda *a: per_step.append(orig_kl(*a)) or per_step[-1])
    x0, kl, _ = algo.differentiable_rollout(policy, b, ctx, schedule=[True, True, True])
    assert per_step[0].sum() > 0 and per_step[1].sum() > 0 and torch.equal(per_step[2], torch.zeros(2))
    # the base step still carries the reward's gradient back to the tuned steps
    algo.classifier.log_probs(policy.decode(x0))[:, 0].sum().backward()
    assert get_condition(policy.transformer).weight.grad[:2].abs().sum() > 0
    # the sampling factory (genrl sample --condition, ctrl_report): tuned above the gate, the base below
    x, cond, uncond = torch.randn(2, 3, 16, 16), policy.encode(["a photo of a circle"] * 2), policy.encode([""])
    fn = condition_factory("small")(policy, cond, uncond)
    with torch.no_grad():
        with policy.disable_adapter():
            base_lo, base_hi = policy.velocity(x, torch.tensor(0.3), cond), policy.velocity(x, torch.tensor(0.8), cond)
        assert torch.equal(fn(x, torch.tensor(0.3)), base_lo)
        assert not torch.allclose(fn(x, torch.tensor(0.8)), base_hi, atol=1e-4)
        with pytest.raises(ValueError, match="mixes sigmas"):
            fn(x, torch.tensor([0.3, 0.8]))
    # saved with the condition and loaded back
    save_condition(policy.transformer, str(tmp_path / "c"))
    pol = load_policy(tiny[0], lora_rank=4)
    assert load_condition(pol.transformer, str(tmp_path / "c")).min_sigma == 0.5
    with pytest.raises(ValueError, match="min_sigma"):
        attach_condition(pol.transformer, LABELS, min_sigma=1.0)
