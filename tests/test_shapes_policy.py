"""ShapesPolicy: a tiny random ShapesPipeline saved with save_pretrained and loaded back through load_policy."""

import json
import os

import pytest
import torch

from genrl.policies import load_policy
from genrl.policies.shapes import ShapesPolicy
from genrl.shapes.generate import generate
from genrl.shapes.model import ShapesModelConfig, build_model, save_pipeline

TINY = ShapesModelConfig(resolution=16, patch_size=4, num_layers=2, num_attention_heads=2, attention_head_dim=8,
                         text_hidden=16, text_layers=1, text_heads=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("shapes_tiny"))
    save_pipeline(d, *build_model(TINY, seed=0))
    return d


def _perturb(params):
    with torch.no_grad():
        for p in params:
            p.add_(0.1 * torch.randn_like(p))


def test_layout_and_loading(tiny_dir):
    with open(os.path.join(tiny_dir, "model_index.json")) as f:
        assert json.load(f)["_class_name"] == "ShapesPipeline"
    for sub in ("transformer", "text_encoder", "tokenizer"):
        assert os.path.isdir(os.path.join(tiny_dir, sub))
    pol = load_policy(tiny_dir, lora_rank=4)
    assert isinstance(pol, ShapesPolicy)
    assert pol.noise_shape(3) == (3, 3, 16, 16)
    cond = pol.encode(["a photo of a red circle", ""])
    assert cond["encoder_hidden_states"].shape[:2] == (2, 16) and cond["pooled_projections"].shape[0] == 2
    x = torch.randn(2, 3, 16, 16)
    v = pol.velocity(x, torch.tensor(0.5), cond)
    assert v.shape == x.shape
    assert torch.allclose(v, pol.velocity(x, torch.tensor([0.5, 0.5]), cond))
    img = pol.decode(x)
    assert img.min() >= 0 and img.max() <= 1
    assert pol.metadata_for(["two red circles"])[0]["spec"]["include"][0]["count"] == 2
    assert pol.metadata_for(["a dog"]) is None
    with pytest.raises(ValueError, match="unknown option"):
        ShapesPolicy.from_pretrained(tiny_dir, rank=3)
    with pytest.raises(FileNotFoundError):
        ShapesPolicy.from_pretrained(os.path.dirname(tiny_dir))


def test_lora_disable_adapter_and_round_trip(tiny_dir, tmp_path):
    torch.manual_seed(0)
    pol = ShapesPolicy.from_pretrained(tiny_dir, lora_rank=4)
    names = [n for n, p in pol.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert all(not p.requires_grad for p in pol.text_encoder.parameters())
    x, s, cond = torch.randn(2, 3, 16, 16), torch.tensor(0.7), pol.encode(["a photo of a square", "one circle"])
    v0 = pol.velocity(x, s, cond)
    _perturb(pol.trainable_parameters())
    v1 = pol.velocity(x, s, cond)
    assert not torch.allclose(v0, v1)
    with pol.disable_adapter():
        assert torch.allclose(pol.velocity(x, s, cond), v0, atol=1e-6)
    assert torch.allclose(pol.velocity(x, s, cond), v1)
    pol.save_trainable(str(tmp_path / "lora"))
    fresh = ShapesPolicy.from_pretrained(tiny_dir, lora_rank=4)
    fresh.load_trainable(str(tmp_path / "lora"))
    assert torch.allclose(fresh.velocity(x, s, cond), v1, atol=1e-6)
    v1.mean().backward()
    assert all(p.grad is not None for p in pol.trainable_parameters())


def test_full_finetune_reference_and_round_trip(tiny_dir, tmp_path):
    pol = ShapesPolicy.from_pretrained(tiny_dir, lora_rank=0)
    assert len(pol.trainable_parameters()) == len(list(pol.transformer.parameters()))
    x, s, cond = torch.randn(1, 3, 16, 16), torch.tensor(0.3), pol.encode(["a photo of a triangle"])
    v0 = pol.velocity(x, s, cond)
    _perturb(pol.trainable_parameters())
    v1 = pol.velocity(x, s, cond)
    with pol.disable_adapter():
        assert torch.allclose(pol.velocity(x, s, cond), v0, atol=1e-5)
    pol.save_trainable(str(tmp_path / "full"))
    fresh = ShapesPolicy.from_pretrained(tiny_dir, lora_rank=0)
    fresh.load_trainable(str(tmp_path / "full"))
    assert torch.allclose(fresh.velocity(x, s, cond), v1, atol=1e-6)
    with pytest.raises(FileNotFoundError):
        ShapesPolicy.from_pretrained(tiny_dir, lora_rank=4).load_trainable(str(tmp_path / "full"))


def test_generate_is_seeded(tiny_dir):
    pol = ShapesPolicy.from_pretrained(tiny_dir, lora_rank=4)
    prompts = ["a photo of two red circles", "a photo of a square", "a photo of a circle left of a square"]
    a = generate(pol, prompts, seed=5, steps=3, cfg_scale=3.0, batch_size=2)
    b = generate(pol, prompts, seed=5, steps=3, cfg_scale=3.0, batch_size=3)
    c = generate(pol, prompts, seed=6, steps=3, cfg_scale=3.0)
    assert a.shape == (3, 3, 16, 16) and torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c)
    # an SDE sampler (DDIM eta = 1, as CTRL trains) is seeded too, and differs from the ODE
    d = generate(pol, prompts, seed=5, steps=3, cfg_scale=3.0, method="ddim", noise_level=1.0)
    e = generate(pol, prompts, seed=5, steps=3, cfg_scale=3.0, method="ddim", noise_level=1.0)
    assert torch.equal(d, e) and not torch.allclose(d, a, atol=1e-3)


def test_x0_prediction_model_returns_the_implied_velocity(tmp_path):
    """A model saved with "prediction": "x0" outputs the clean image; velocity() must be (x_t - x0_hat) / sigma,
    so one Euler step from sigma straight to 0 lands exactly on the model's x0_hat."""
    tr, te, tok = build_model(TINY, seed=0)
    save_pipeline(str(tmp_path), tr, te, tok, extra={"prediction": "x0"})
    policy = ShapesPolicy.from_pretrained(str(tmp_path), lora_rank=0)
    assert policy.prediction == "x0"
    cond = policy.encode(["a red circle", "two squares"])
    x, sigma = torch.randn(2, 3, 16, 16), torch.tensor([0.7, 0.3])
    with torch.no_grad():
        v = policy.velocity(x, sigma, cond)
        x0_hat = policy.transformer(hidden_states=x, encoder_hidden_states=cond["encoder_hidden_states"],
                                    pooled_projections=cond["pooled_projections"], timestep=sigma * 1000).sample
    torch.testing.assert_close(x - sigma.view(-1, 1, 1, 1) * v, x0_hat, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="prediction must be"):
        ShapesPolicy(tr, te, tok, lora_rank=0, prediction="eps")
