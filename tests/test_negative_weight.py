"""advantage.negative_weight: negative advantages scaled after clipping (0 = positive-only), positives untouched,
and out-of-range values rejected before anything is written."""

import pytest
import torch
from loop_helpers import tiny_config, tiny_shapes_model

from genrl.algorithms import Batch
from genrl.config import ConfigError
from genrl.loop import Trainer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_shapes_model(str(tmp_path_factory.mktemp("tiny") / "shapes"))


def test_scales_negative_advantages_only(model, tmp_path):
    batch = Batch(group=torch.tensor([0] * 4 + [1] * 4), prompts=["p"] * 8,
                  rewards=torch.tensor([0.0, 1.0, 0.2, 0.9, 0.5, 0.1, 0.3, 0.3]))
    adv = {}
    for w in (1.0, 0.25, 0.0):
        tr = Trainer(tiny_config(model, str(tmp_path / f"r{w}"), advantage={"negative_weight": w}), progress=False)
        adv[w] = tr.compute_advantages(batch, 0)[1]["adv"]
    neg = adv[1.0] < 0
    assert neg.any() and (~neg & (adv[1.0] > 0)).any()
    assert torch.equal(adv[0.25][~neg], adv[1.0][~neg]) and torch.equal(adv[0.0][~neg], adv[1.0][~neg])
    torch.testing.assert_close(adv[0.25][neg], 0.25 * adv[1.0][neg])
    assert (adv[0.0][neg] == 0).all()


@pytest.mark.parametrize("w", [-0.1, 1.5])
def test_out_of_range_is_one_clear_error(model, tmp_path, w):
    with pytest.raises(ConfigError, match=r"advantage.negative_weight' must be in \[0, 1\]"):
        Trainer(tiny_config(model, str(tmp_path / "r"), advantage={"negative_weight": w}), progress=False)
    assert not (tmp_path / "r").exists()
