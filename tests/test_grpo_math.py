"""Flow-GRPO pieces against hand computations: advantages, zero-std / non-finite filtering, PPO clip, KL form,
trained-step selection, and the K-repeat prompt sampler."""

import math

import pytest
import torch

from genrl.advantages import group_advantages, nonfinite_group_mask, zero_std_mask
from genrl.algorithms.grpo import kl_code_form, ppo_clip_loss, trained_mask
from genrl.data import KRepeatSampler, load_prompts


def test_group_advantages_hand_made_group():
    r = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 4.0])
    g = torch.tensor([0, 0, 1, 1, 2, 2])
    a = group_advantages(r, g, global_std=False, clip=None, eps=1e-4)
    # group 0: mean .5, std .5 -> +-1/(.5+1e-4)*.5 ; group 1: std 0 -> 0 ; group 2: mean 3, std 1
    expect = torch.tensor([0.5 / 0.5001, -0.5 / 0.5001, 0.0, 0.0, -1 / 1.0001, 1 / 1.0001])
    assert torch.allclose(a, expect, atol=1e-6)
    # global std: (r - group mean) / (std of all 6 rewards)
    std = r.std(unbiased=False).item()
    a = group_advantages(r, g, global_std=True, clip=None, eps=1e-4)
    assert torch.allclose(a, torch.tensor([0.5, -0.5, 0, 0, -1, 1]) / (std + 1e-4), atol=1e-6)
    # clipping
    a = group_advantages(torch.tensor([0.0, 0.0, 0.0, 100.0]), torch.zeros(4, dtype=torch.long), global_std=False,
                         clip=1.5)
    assert a.max().item() == 1.5 and a.min().item() >= -1.5


def test_group_ids_need_not_be_contiguous_or_sorted():
    r = torch.tensor([3.0, 1.0, 2.0, 0.0])
    g = torch.tensor([7, 2, 7, 2])
    a = group_advantages(r, g, global_std=False, clip=None, eps=0.0)
    assert torch.allclose(a, torch.tensor([1.0, 1.0, -1.0, -1.0]))


def test_zero_std_and_nonfinite_masks():
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 2.0, float("nan")])
    g = torch.tensor([0, 0, 1, 1, 2, 2])
    assert zero_std_mask(r, g).tolist() == [True, True, False, False, False, False]
    assert nonfinite_group_mask(r, g).tolist() == [False, False, False, False, True, True]


def test_ppo_clip_loss_by_hand():
    adv = torch.tensor([1.0, -1.0, 2.0])
    ratio = torch.tensor([1.5, 1.5, 0.5])
    eps = 0.2
    # max(-A r, -A clip(r)): [-1.2, 1.5, -1.0] -> mean 0.1
    assert ppo_clip_loss(adv, ratio, eps).item() == pytest.approx((-1.2 + 1.5 - 1.0) / 3)
    assert ppo_clip_loss(adv, torch.ones(3), eps).item() == pytest.approx(-adv.mean().item())


def test_kl_code_form():
    mean = torch.zeros(2, 3, 2, 2)
    ref = torch.full((2, 3, 2, 2), 0.1)
    std = torch.tensor([0.5, 0.0]).reshape(2, 1, 1, 1)
    h = torch.tensor(0.25)
    kl = kl_code_form(mean, ref, std, h)
    # sigma_t^2 = std^2 / h = 1 -> 0.01 / 2 ; std 0 -> 0
    assert kl.tolist() == pytest.approx([0.005, 0.0])
    # CPS: the reference divides by the step variance itself, std^2 = 0.25 -> 0.01 / 0.5
    assert kl_code_form(mean, ref, std, h, kind="cps").tolist() == pytest.approx([0.02, 0.0])


def test_trained_mask():
    m = trained_mask(torch.ones(10, dtype=torch.bool), 0.99, windowed=False)
    assert m.shape == (1, 10) and torch.nonzero(m[0]).reshape(-1).tolist() == list(range(9))
    w = torch.tensor([[False, True, True, True, False, False], [True, True, True, False, False, False]])
    assert trained_mask(w, 0.99, windowed=True).tolist() == w.tolist()  # per sample: its own window


def test_k_repeat_sampler_groups_complete_and_spread():
    n, k, m, world = 10, 4, 3, 2
    shards = [KRepeatSampler(n, k, m, world, r, seed=5) for r in range(world)]
    for step in range(4):
        idx = sum((s.indices(step)[0] for s in shards), [])
        grp = torch.cat([s.indices(step)[1] for s in shards])
        assert len(idx) == k * m
        for gid in range(m):  # every group: k copies of one prompt, across the ranks
            members = [idx[i] for i in range(len(idx)) if grp[i] == gid]
            assert len(members) == k and len(set(members)) == 1
        assert len({idx[i] for i in range(len(idx))}) == m  # distinct prompts per step
    # deterministic from (seed, step); different seeds differ
    assert KRepeatSampler(n, k, m, 1, 0, 5).indices(3)[0] == KRepeatSampler(n, k, m, 1, 0, 5).indices(3)[0]
    assert KRepeatSampler(n, k, m, 1, 0, 5).indices(3)[0] != KRepeatSampler(n, k, m, 1, 0, 6).indices(3)[0]
    # every prompt is used once per pass through the source
    s = KRepeatSampler(9, 2, 3, 1, 0, 0)
    seen = [i for step in range(3) for i in dict.fromkeys(s.indices(step)[0])]
    assert sorted(seen) == list(range(9))
    with pytest.raises(ValueError, match="divisible"):
        KRepeatSampler(n, 3, 3, 2, 0)


def test_prompt_files(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# comment\na red circle\n\n two squares \n")
    assert load_prompts(str(f)).prompts == ["a red circle", "two squares"]
    (tmp_path / "e.txt").write_text("\n# only a comment\n")
    with pytest.raises(ValueError, match="has no prompts"):
        load_prompts(str(tmp_path / "e.txt"))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_prompts(str(tmp_path / "missing.txt"))
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError, match="cannot read"):
        load_prompts(str(tmp_path / "b.txt"))
    j = tmp_path / "m.jsonl"
    j.write_text('{"prompt": "a photo of a cat", "tag": "single_object"}\n')
    ps = load_prompts(str(j))
    assert ps.prompts == ["a photo of a cat"] and ps.metadata[0]["tag"] == "single_object"
    ev = load_prompts("shapes:eval").subset(12)
    assert len(ev) == 12 and len({m["spec"]["tag"] for m in ev.metadata}) == 6  # covers every category
    assert math.isfinite(len(load_prompts("shapes:train")))
