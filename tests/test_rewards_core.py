"""rewards core: input conversion/validation, registry, batching, combine, JPEG rewards (no model weights)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import rewards
from rewards.base import Reward, RewardOutput, resolve_dtype
from rewards.registry import _FACTORIES, options_of


class MeanPixel(Reward):
    """Test reward: mean pixel value in [0, 1]; records the batch sizes it saw."""

    name = "test_mean_pixel"
    input_format = "tensor"

    def __init__(self, batch_size: int = 16, offset: float = 0.0):
        self.batch_size, self.offset, self.seen = batch_size, offset, []

    def score(self, images, prompts, metadata=None):
        self.seen.append(len(images))
        return RewardOutput(images.mean(dim=(1, 2, 3)) + self.offset, {"prompt": list(prompts)})


class PromptLength(Reward):
    name = "test_prompt_len"
    input_format = "pil"

    def __init__(self):
        pass

    def score(self, images, prompts, metadata=None):
        return RewardOutput(torch.tensor([float(len(p)) for p in prompts]))


@pytest.fixture(autouse=True)
def _register_test_rewards():
    rewards.register("test_mean_pixel")(MeanPixel)
    rewards.register("test_prompt_len")(PromptLength)
    yield
    _FACTORIES.pop("test_mean_pixel", None)
    _FACTORIES.pop("test_prompt_len", None)


def _imgs(n=3, h=8, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g)


# ---------- image formats ----------

def test_all_input_formats_give_same_scores():
    x = _imgs()
    u8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    r = MeanPixel()
    ref = r(x, ["a"] * 3).scores
    from_tensor_u8 = (torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255).mean(dim=(1, 2, 3))
    for samples in (list(u8), u8, [Image.fromarray(a) for a in u8], list(x)):
        out = r(samples, ["a"] * 3)
        assert out.scores.dtype == torch.float32 and out.scores.shape == (3,)
        torch.testing.assert_close(out.scores, from_tensor_u8, atol=1e-6, rtol=0)
    torch.testing.assert_close(ref, x.mean(dim=(1, 2, 3)))


def test_to_pil_and_to_tensor_round_trip():
    x = (_imgs() * 255).round() / 255
    pils = rewards.to_pil(x)
    assert all(p.mode == "RGB" and p.size == (6, 8) for p in pils)
    torch.testing.assert_close(rewards.to_tensor(pils), x)
    gray = Image.new("L", (4, 4), 128)
    assert rewards.to_pil([gray])[0].mode == "RGB"


@pytest.mark.parametrize(
    "samples, match",
    [
        ([Image.new("CMYK", (4, 4))], "mode 'CMYK'.*convert"),
        ([Image.new("F", (4, 4))], "mode 'F'"),
        ([np.zeros((4, 4, 3), np.float32)], "uint8 HxWx3"),
        ([np.zeros((4, 4), np.uint8)], "uint8 HxWx3"),
        (torch.zeros(2, 4, 4), r"\[N, 3, H, W\]"),
        (torch.zeros(2, 1, 4, 4), r"\[N, 3, H, W\]"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "float in \\[0, 1\\]"),
        (torch.full((2, 3, 4, 4), -1.0), "must lie in \\[0, 1\\]"),
        (["not an image", "x"], "has type str"),
    ],
)
def test_bad_images_give_clear_errors(samples, match):
    n = len(samples)
    with pytest.raises(ValueError, match=match):
        MeanPixel()(samples, ["p"] * n)


def test_bad_batches():
    r = MeanPixel()
    with pytest.raises(ValueError, match="empty batch"):
        r([], [])
    with pytest.raises(ValueError, match="empty batch"):
        r(torch.zeros(0, 3, 4, 4), [])
    with pytest.raises(ValueError, match="3 samples but 2 prompts"):
        r(_imgs(3), ["a", "b"])
    with pytest.raises(ValueError, match="list of strings"):
        r(_imgs(1), "a single prompt")
    with pytest.raises(ValueError, match="metadata has 1 entries for 3 samples"):
        r(_imgs(3), ["a"] * 3, metadata=[{}])
    with pytest.raises(ValueError, match="wrap a single image in a list"):
        r(Image.new("RGB", (4, 4)), ["a"])
    with pytest.raises(ValueError, match="wrap a single image in a list"):
        r(np.zeros((4, 4, 3), np.uint8), ["a"])
    with pytest.raises(ValueError, match="different sizes"):
        r([Image.new("RGB", (4, 4)), Image.new("RGB", (5, 4))], ["a", "b"])


def test_internal_batching_keeps_order_and_details():
    x = _imgs(7)
    r = MeanPixel(batch_size=3)
    prompts = [f"p{i}" for i in range(7)]
    out = r(x, prompts)
    assert r.seen == [3, 3, 1]
    torch.testing.assert_close(out.scores, x.mean(dim=(1, 2, 3)))
    assert out.details["prompt"] == prompts


# ---------- registry ----------

def test_available_lists_every_planned_reward():
    names = rewards.available()
    for n in ("pickscore", "clip_score", "aesthetic", "hpsv2", "imagereward", "ocr", "jpeg_compressibility",
              "jpeg_incompressibility", "geneval", "shapes", "vlm_judge", "multiview3d"):
        assert n in names
    assert names == sorted(names)


def test_unknown_reward_lists_available_and_suggests():
    with pytest.raises(ValueError, match=r"unknown reward 'pickscor'.*did you mean 'pickscore'.*available: .*ocr"):
        rewards.load("pickscor")


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"no option\(s\) \['qualty'\].*quality"):
        rewards.load("jpeg_compressibility", qualty=90)
    assert options_of("jpeg_compressibility")["quality"] == 95


def test_resolve_dtype():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(None) is torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8")


# ---------- combine ----------

def test_combine_weighted_sum_and_details():
    x = _imgs(4)
    prompts = ["a", "bb", "ccc", "dddd"]
    c = rewards.combine({"test_mean_pixel": 2.0, "test_prompt_len": -0.5},
                        options={"test_mean_pixel": {"offset": 1.0}})
    out = c(x, prompts)
    mean = x.mean(dim=(1, 2, 3)) + 1.0
    lens = torch.tensor([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(out.scores, 2.0 * mean - 0.5 * lens)
    torch.testing.assert_close(out.details["test_mean_pixel"], mean)
    torch.testing.assert_close(out.details["test_prompt_len"], lens)
    assert out.details["test_mean_pixel/prompt"] == prompts
    assert out.scores.dtype == torch.float32
    assert "2*test_mean_pixel" in c.name


def test_combine_errors():
    with pytest.raises(ValueError, match="at least one reward"):
        rewards.combine({})
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        rewards.combine({"nope": 1.0})
    with pytest.raises(ValueError, match="weight of 'test_prompt_len' must be a number"):
        rewards.combine({"test_prompt_len": "1"})
    with pytest.raises(ValueError, match=r"options given for \['test_mean_pixel'\]"):
        rewards.combine({"test_prompt_len": 1.0}, options={"test_mean_pixel": {}})


# ---------- JPEG (DDPO) ----------

def _jpeg_kb(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return len(buf.getvalue()) / 1000.0


def test_jpeg_rewards_exact_values_and_ordering():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    kb = torch.tensor([_jpeg_kb(flat), _jpeg_kb(noise)], dtype=torch.float32)
    inc = rewards.load("jpeg_incompressibility")([flat, noise], ["", ""])
    comp = rewards.load("jpeg_compressibility")([flat, noise], ["", ""])
    torch.testing.assert_close(inc.scores, kb)
    torch.testing.assert_close(comp.scores, -kb / 500)
    assert comp.scores[0] > comp.scores[1] and inc.scores[1] > inc.scores[0]
    # float tensors are quantised with round(x * 255) first, as in Flow-GRPO
    t = torch.from_numpy(noise).permute(2, 0, 1)[None].float() / 255
    torch.testing.assert_close(rewards.load("jpeg_incompressibility")(t, [""]).scores, kb[1:])


# ---------- weight-file resolution ----------

def test_resolve_file_local_and_offline_hub(tmp_path):
    from rewards._hub import load_state_dict, resolve_file

    f = tmp_path / "head.pth"
    torch.save({"state_dict": {"module.w": torch.ones(2)}}, f)
    assert resolve_file(str(f), "x.pth") == str(f)
    assert resolve_file(str(tmp_path), "head.pth") == str(f)
    assert list(load_state_dict(str(f))) == ["w"]  # wrapper and DataParallel prefix removed
    with pytest.raises(FileNotFoundError, match="does not exist; put other.pth"):
        resolve_file(str(tmp_path), "other.pth")
    with pytest.raises(FileNotFoundError, match="neither an existing file"):
        resolve_file("./missing.pth", "x.pth")
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        resolve_file("some-org/some-repo", "w.pth", local_files_only=True, cache_dir=str(tmp_path / "cache"))
