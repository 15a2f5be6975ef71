"""DAPO dynamic sampling (advantage.dynamic_sampling): extra rollout rounds until groups_per_step groups are
informative, the surplus dropped, new prompts per round, and the config checks."""

import json

import pytest
import torch
from loop_helpers import tiny_config, tiny_shapes_model

from genrl.algorithms import Batch
from genrl.config import ConfigError
from genrl.data import KRepeatSampler
from genrl.loop import Trainer, train


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_shapes_model(str(tmp_path_factory.mktemp("tiny") / "shapes"))


def test_rounds_draw_new_prompts_with_their_own_group_ids():
    s = KRepeatSampler(num_prompts=50, group_size=4, groups_per_step=3, seed=1)
    idx0, g0 = s.indices(5)
    assert (idx0, g0.tolist()) == (s.indices(5, 0)[0], s.indices(5, 0)[1].tolist())
    idx1, g1 = s.indices(5, 1)
    assert sorted(set(g1.tolist())) == [3, 4, 5] and sorted(set(g0.tolist())) == [0, 1, 2]
    assert set(idx1) != set(idx0)
    for g in range(3, 6):  # a group still holds group_size copies of one prompt
        assert len({i for i, gg in zip(idx1, g1.tolist()) if gg == g}) == 1


def _fake(groups: list[int], rewards: list[float]) -> Batch:
    return Batch(group=torch.tensor(groups), rewards=torch.tensor(rewards), prompts=["p"] * len(groups))


def test_redraws_until_enough_informative_groups_and_drops_the_surplus(model, tmp_path):
    tr = Trainer(tiny_config(model, str(tmp_path / "r"), advantage={"dynamic_sampling": 3}), progress=False)
    rounds = {  # groups_per_step 2, group_size 4; round r holds groups 2r, 2r+1
        0: _fake([0, 0, 0, 0, 1, 1, 1, 1], [0.5, 0.5, 0.5, 0.5, 0.0, 1.0, 0.0, 1.0]),  # group 0 zero-std
        1: _fake([2, 2, 2, 2, 3, 3, 3, 3], [0.0, 0.2, 0.0, 0.2, 1.0, 0.0, 1.0, 0.0]),  # both informative
        2: _fake([4] * 8, [1.0] * 8),
    }
    calls = []
    tr.rollout_step = lambda step, round_=0: (calls.append(round_), rounds[round_], {"x": torch.ones(8)})[1:]
    batch, details, n = tr.dynamic_rollout(step=0)
    assert calls == [0, 1] and n == 2 and len(batch.rewards) == 16 and details["x"].shape == (16,)
    chosen, info = tr.compute_advantages(batch, 0)
    trained = {int(batch.group[i]) for i in chosen if info["adv"][i] != 0}
    assert trained == {1, 2}  # the first two informative groups; group 3 is surplus, group 0 zero-std
    assert (info["adv"][batch.group == 3] == 0).all() and (info["adv"][batch.group == 0] == 0).all()


def test_gives_up_after_the_configured_rounds(model, tmp_path):
    tr = Trainer(tiny_config(model, str(tmp_path / "r"), advantage={"dynamic_sampling": 2}), progress=False)
    tr.rollout_step = lambda step, round_=0: (_fake([2 * round_] * 4 + [2 * round_ + 1] * 4, [1.0] * 8), {})
    _, _, n = tr.dynamic_rollout(step=0)
    assert n == 3  # the first round + 2 redraws, then train on what there is


def test_run_logs_rounds_and_counts_every_rollout(model, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(model, str(run), advantage={"dynamic_sampling": 2}, eval={"every": 0}), progress=False)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/rollout_rounds" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(1 <= r["train/rollout_rounds"] <= 3 for r in rows)
    assert rows[-1]["samples_seen"] == 8 * sum(r["train/rollout_rounds"] for r in rows)


def test_needs_zero_std_filtering(model, tmp_path):
    with pytest.raises(ConfigError, match="filter_zero_std"):
        tiny_config(model, str(tmp_path), advantage={"dynamic_sampling": 2, "filter_zero_std": False})
    with pytest.raises(ConfigError, match="dynamic_sampling"):
        tiny_config(model, str(tmp_path), advantage={"dynamic_sampling": -1})
