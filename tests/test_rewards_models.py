"""Model rewards through their real loading code, on tiny random models saved to disk (no downloads).

Each score is compared with an independent computation of the published formula from the tiny model's raw
modules (numpy cosine, explicit projections, explicit preprocessing)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import rewards

PROMPTS = ["hello world", "a red cat", "low hello"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any attempt to download turns into a test failure."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access is blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_clip_tokenizer(path):
    """CLIP BPE tokenizer with a tiny vocabulary (byte symbols + a few merges), built offline."""
    from transformers import CLIPTokenizer

    merges = ["h e", "l l", "l o</w>", "he ll", "w o", "r l", "rl d</w>"]
    symbols = _bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A CLIPModel (projection_dim=768 so the real 768-input aesthetic head fits) + CLIPProcessor on disk."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    root = tmp_path_factory.mktemp("tiny_clip")
    tok = write_tiny_clip_tokenizer(root)
    v = len(tok)
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=v - 2, eos_token_id=v - 1,
                         pad_token_id=v - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=30, patch_size=6),
        projection_dim=768,
    )
    model = CLIPModel(cfg)
    model.logit_scale.data.fill_(math.log(100.0))
    model.save_pretrained(root)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    ip = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30}, image_mean=mean,
                            image_std=std, do_convert_rgb=True)
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(root)
    return root, model.eval()


def _images(n=3, seed=0, size=(40, 36)):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def _ref_pixels(images, size=30):
    """CLIP preprocessing by hand (PIL): bicubic resize of the short side, centre crop, /255, OpenAI mean/std."""
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    out = []
    for im in images:
        w, h = im.size
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        a = np.asarray(im.resize((nw, nh), Image.BICUBIC), dtype=np.float64) / 255.0
        top, left = (nh - size) // 2, (nw - size) // 2
        a = (a[top:top + size, left:left + size] - mean) / std
        out.append(a.transpose(2, 0, 1))
    return torch.tensor(np.stack(out), dtype=torch.float32)


def _ref_clip_embeddings(root, model, images, prompts, padding):
    """Independent path: hand preprocessing -> raw towers -> explicit projections -> numpy normalisation."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(root)
    with torch.no_grad():
        pix = _ref_pixels(images)
        img = model.visual_projection(model.vision_model(pixel_values=pix).pooler_output).numpy()
        tok = proc.tokenizer(prompts, padding=padding, truncation=True, max_length=77, return_tensors="pt")
        txt = model.text_projection(model.text_model(**tok).pooler_output).numpy()
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=-1, keepdims=True)
    return img, txt


def test_pickscore_matches_formula(tiny_clip):
    root, model = tiny_clip
    images = _images()
    r = rewards.load("pickscore", model=str(root), processor=str(root), local_files_only=True, device="cpu")
    out = r(images, PROMPTS)
    # the processor runs the PIL pipeline of the published scorers (not transformers 5's torchvision default)
    pix = r.clip.processor(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pix, _ref_pixels(images), atol=2e-5, rtol=0)
    img, txt = _ref_clip_embeddings(root, model, images, PROMPTS, padding=True)
    cos = (img * txt).sum(-1)
    np.testing.assert_allclose(out.scores.numpy(), 100.0 * cos / 26.0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.details["cosine"].numpy(), cos, rtol=1e-4, atol=1e-6)
    raw = rewards.load("pickscore", model=str(root), processor=str(root), raw=True, local_files_only=True)
    np.testing.assert_allclose(raw(images, PROMPTS).scores.numpy(), 100.0 * cos, rtol=1e-4, atol=1e-4)
    # internal batching and order: one by one gives the same numbers
    r.batch_size = 1
    torch.testing.assert_close(r(images, PROMPTS).scores, out.scores, rtol=1e-5, atol=1e-6)


def test_dtype_and_batch_size_options(tiny_clip):
    root, _ = tiny_clip
    images = _images(seed=6)
    fp32 = rewards.load("clip_score", model=str(root), local_files_only=True, device="cpu")
    bf16 = rewards.load("clip_score", model=str(root), local_files_only=True, device="cpu", dtype="bf16",
                        batch_size=2)
    assert bf16.clip.model.dtype == torch.bfloat16 and bf16.batch_size == 2
    out = bf16(images, PROMPTS)
    assert out.scores.dtype == torch.float32
    torch.testing.assert_close(out.scores, fp32(images, PROMPTS).scores, atol=0.05, rtol=0)


def test_clip_score_matches_formula(tiny_clip):
    root, model = tiny_clip
    images = _images(seed=1)
    out = rewards.load("clip_score", model=str(root), local_files_only=True, device="cpu")(images, PROMPTS)
    img, txt = _ref_clip_embeddings(root, model, images, PROMPTS, padding="max_length")
    # logits_per_image.diag() / 100 with logit_scale = log(100): the cosine
    with torch.no_grad():
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(root, backend="pil")
        inputs = proc(text=PROMPTS, images=images, padding="max_length", truncation=True, max_length=77,
                     return_tensors="pt")
        logits = model(**inputs).logits_per_image.diagonal().numpy() / 100.0
    np.testing.assert_allclose(out.scores.numpy(), (img * txt).sum(-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.scores.numpy(), logits, rtol=1e-4, atol=1e-5)


def test_aesthetic_matches_formula_with_real_head_shape(tiny_clip, tmp_path):
    from rewards.aesthetic import AestheticMLP

    root, model = tiny_clip
    torch.manual_seed(1)
    head = AestheticMLP(768)
    torch.save(head.state_dict(), tmp_path / "aesthetic-model.pth")
    images = _images(seed=2)
    r = rewards.load("aesthetic", model=str(root), head=str(tmp_path), local_files_only=True)  # dir -> default name
    out = r(images, ["", "", ""])
    img, _ = _ref_clip_embeddings(root, model, images, PROMPTS, padding=True)
    w = [(head.layers[i].weight.detach().numpy(), head.layers[i].bias.detach().numpy()) for i in (0, 2, 4, 6, 7)]
    ref = img
    for weight, bias in w:  # linear layers only; dropout is off at eval
        ref = ref @ weight.T + bias
    np.testing.assert_allclose(out.scores.numpy(), ref[:, 0], rtol=1e-4, atol=1e-5)
    # safetensors heads load too
    from safetensors.torch import save_file

    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    r2 = rewards.load("aesthetic", model=str(root), head=str(tmp_path / "head.safetensors"), local_files_only=True)
    torch.testing.assert_close(r2(images, ["", "", ""]).scores, out.scores)


def test_clip_rewards_loading_errors(tiny_clip, tmp_path):
    root, _ = tiny_clip
    with pytest.raises(FileNotFoundError, match="cannot load CLIP model"):
        rewards.load("pickscore", model=str(tmp_path / "nowhere"), processor=str(root), local_files_only=True)
    with pytest.raises(FileNotFoundError, match="aesthetic head"):
        rewards.load("aesthetic", model=str(root), head=str(tmp_path), local_files_only=True)
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="expected the LAION MLP"):
        rewards.load("aesthetic", model=str(root), head=str(tmp_path / "bad.pth"), local_files_only=True)


# ---------- HPS v2.1 (open_clip) ----------

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_hps(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    root = tmp_path_factory.mktemp("tiny_hps")
    (root / "cfg").mkdir()
    (root / "cfg" / "Tiny-HPS-ViT.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(root / "cfg")
    torch.manual_seed(0)
    model = open_clip.create_model("Tiny-HPS-ViT", pretrained=None)
    torch.save({"state_dict": model.state_dict()}, root / "HPS_v2.1_compressed.pt")  # HPSv2's checkpoint layout
    return root, model.eval()


def test_hpsv2_matches_formula(tiny_hps):
    import open_clip
    from torchvision.transforms import functional as TF

    root, model = tiny_hps
    images = _images(seed=3, size=(64, 32)) + _images(1, seed=4, size=(48, 48))
    r = rewards.load("hpsv2", checkpoint=str(root), model="Tiny-HPS-ViT", local_files_only=True, device="cpu")
    out = r(images, PROMPTS + ["a dog"])

    # independent HPSv2 preprocess_val: ResizeMaxSize(32) on PIL (bicubic) + centred zero pad, ToTensor, Normalize
    def prep(im):
        w, h = im.size
        s = 32 / max(w, h)
        nh, nw = round(h * s), round(w * s)
        im = TF.resize(im, [nh, nw], interpolation=TF.InterpolationMode.BICUBIC)
        ph, pw = 32 - nh, 32 - nw
        im = TF.pad(im, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
        x = TF.to_tensor(im)
        return TF.normalize(x, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])

    x = torch.stack([prep(im) for im in images])
    with torch.no_grad():
        img = model.encode_image(x).numpy()
        txt = model.encode_text(open_clip.get_tokenizer("Tiny-HPS-ViT")(PROMPTS + ["a dog"])).numpy()
    img /= np.linalg.norm(img, axis=-1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=-1, keepdims=True)
    np.testing.assert_allclose(out.scores.numpy(), (img * txt).sum(-1), rtol=1e-4, atol=1e-5)
    assert out.scores.abs().max() <= 1.0  # cosine, no logit scale


def test_hpsv2_errors(tiny_hps, tmp_path):
    root, _ = tiny_hps
    with pytest.raises(FileNotFoundError, match="HPS v2.1 checkpoint"):
        rewards.load("hpsv2", checkpoint=str(tmp_path), model="Tiny-HPS-ViT", local_files_only=True)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        rewards.load("hpsv2", checkpoint=str(root), model="No-Such-ViT", local_files_only=True)


# ---------- ImageReward (BLIP on transformers) ----------

def _to_original_vision_keys(sd):
    """transformers BlipVisionModel keys -> BLIP/timm ViT keys (the layout of ImageReward.pt)."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if k == "embeddings.class_embedding":
            nk = "cls_token"
        elif k == "embeddings.position_embedding":
            nk = "pos_embed"
        elif k.startswith("embeddings.patch_embedding."):
            nk = "patch_embed.proj." + parts[-1]
        elif k.startswith("post_layernorm."):
            nk = "norm." + parts[-1]
        else:
            i, rest = parts[2], ".".join(parts[3:])
            rest = (rest.replace("layer_norm1", "norm1").replace("layer_norm2", "norm2")
                    .replace("self_attn.qkv", "attn.qkv").replace("self_attn.projection", "attn.proj"))
            nk = f"blocks.{i}.{rest}"
        out["blip.visual_encoder." + nk] = v
    return out


@pytest.fixture(scope="module")
def tiny_imagereward(tmp_path_factory):
    from transformers import BertTokenizer, BlipTextModel, BlipVisionModel

    from rewards.imagereward import ImageRewardMLP, text_config_from, vision_config_from

    root = tmp_path_factory.mktemp("tiny_imagereward")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "cat", "hello", "world", "low", "dog"]
    (root / "tok").mkdir()
    (root / "tok" / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(root / "tok" / "vocab.txt")).save_pretrained(root / "tok")
    med = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
           "layer_norm_eps": 1e-12, "max_position_embeddings": 40, "model_type": "bert", "num_attention_heads": 4,
           "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": len(words) + 2,
           "encoder_width": 32, "add_cross_attention": True}
    (root / "med_config.json").write_text(json.dumps(med))
    torch.manual_seed(0)
    # width 128 -> 2 heads of 64 (ImageReward's width // 64 rule), patch 16 on 32x32 images
    vision_sd = {"embeddings.class_embedding": torch.zeros(1, 1, 128), "embeddings.patch_embedding.weight":
                 torch.zeros(128, 3, 16, 16), "embeddings.position_embedding": torch.zeros(1, 5, 128),
                 "encoder.layers.1.mlp.fc1.weight": torch.zeros(256, 128)}
    vision_sd["encoder.layers.0.mlp.fc1.weight"] = torch.zeros(256, 128)
    vcfg = vision_config_from(vision_sd)
    assert (vcfg.image_size, vcfg.num_hidden_layers, vcfg.num_attention_heads) == (32, 2, 2)
    vision = BlipVisionModel(vcfg).eval()
    text = BlipTextModel(text_config_from(med, 128), add_pooling_layer=False).eval()
    mlp = ImageRewardMLP(32).eval()
    ckpt = _to_original_vision_keys(vision.state_dict())
    ckpt.update({"blip.text_encoder." + k: v for k, v in text.state_dict().items()})
    ckpt.update({"mlp." + k: v for k, v in mlp.state_dict().items()})
    ckpt["blip.vision_proj.weight"] = torch.zeros(4, 128)  # other BLIP_Pretrain weights are ignored
    torch.save(ckpt, root / "ImageReward.pt")
    return root, vision, text, mlp


def test_imagereward_matches_formula(tiny_imagereward):
    from torchvision import transforms as T
    from transformers import BertTokenizer

    root, vision, text, mlp = tiny_imagereward
    r = rewards.load("imagereward", checkpoint=str(root), tokenizer=str(root / "tok"), local_files_only=True,
                     device="cpu")
    images = _images(seed=5, size=(48, 40))
    out = r(images, PROMPTS)

    tf = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor(),
                    T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
    tok = BertTokenizer.from_pretrained(root / "tok")
    ids = tok(PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    assert ids["input_ids"].shape == (3, 35) and (ids["input_ids"][:, 0] == tok.cls_token_id).all()
    with torch.no_grad():
        emb = vision(pixel_values=torch.stack([tf(im) for im in images])).last_hidden_state
        h = text(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], encoder_hidden_states=emb,
                 encoder_attention_mask=torch.ones(emb.shape[:2], dtype=torch.long), is_decoder=False)
        raw = mlp(h.last_hidden_state[:, 0]).squeeze(-1)
    expected = (raw - 0.16717362830052426) / 1.0333394966054072
    torch.testing.assert_close(out.details["raw"], raw, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.scores, expected, rtol=1e-4, atol=1e-5)
    assert len(r.tokenizer) == len(tok) + 2  # [DEC] and [ENC] added as BLIP does


def _manual_imagereward(ckpt, pixels, ids, mask, heads_v=2, heads_t=4):
    """ImageReward from the original-layout checkpoint with plain torch ops: timm/BLIP ViT (pre-LN, eps 1e-6)
    and BLIP med.py BERT (post-LN, eps 1e-12) whose layers cross-attend to all image tokens."""
    F = torch.nn.functional
    g = {k: v.double() for k, v in ckpt.items()}

    def heads(x, h):
        b, n, d = x.shape
        return x.view(b, n, h, d // h).transpose(1, 2)

    def attend(q, k, v, h, bias=None):
        s = heads(q, h) @ heads(k, h).transpose(-1, -2) / math.sqrt(q.shape[-1] // h)
        if bias is not None:
            s = s + bias
        o = s.softmax(-1) @ heads(v, h)
        return o.transpose(1, 2).reshape(q.shape)

    v = "blip.visual_encoder."
    x = F.conv2d(pixels.double(), g[v + "patch_embed.proj.weight"], g[v + "patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([g[v + "cls_token"].expand(x.shape[0], -1, -1), x], 1) + g[v + "pos_embed"]
    depth = 1 + max(int(k.split(".")[3]) for k in g if k.startswith(v + "blocks."))
    for i in range(depth):
        b = f"{v}blocks.{i}."
        y = F.layer_norm(x, x.shape[-1:], g[b + "norm1.weight"], g[b + "norm1.bias"], 1e-6)
        q, k, vv = (y @ g[b + "attn.qkv.weight"].T + g[b + "attn.qkv.bias"]).chunk(3, -1)
        x = x + attend(q, k, vv, heads_v) @ g[b + "attn.proj.weight"].T + g[b + "attn.proj.bias"]
        y = F.layer_norm(x, x.shape[-1:], g[b + "norm2.weight"], g[b + "norm2.bias"], 1e-6)
        y = F.gelu(y @ g[b + "mlp.fc1.weight"].T + g[b + "mlp.fc1.bias"])
        x = x + y @ g[b + "mlp.fc2.weight"].T + g[b + "mlp.fc2.bias"]
    img = F.layer_norm(x, x.shape[-1:], g[v + "norm.weight"], g[v + "norm.bias"], 1e-6)

    t = "blip.text_encoder."

    def lin(x, name):
        return x @ g[name + ".weight"].T + g[name + ".bias"]

    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], g[name + ".weight"], g[name + ".bias"], 1e-12)

    h = g[t + "embeddings.word_embeddings.weight"][ids] + g[t + "embeddings.position_embeddings.weight"][:ids.shape[1]]
    h = ln(h, t + "embeddings.LayerNorm")
    text_bias = ((1.0 - mask.double()) * -1e9)[:, None, None, :]
    n_layers = 1 + max(int(k.split(".")[4]) for k in g if k.startswith(t + "encoder.layer."))
    for i in range(n_layers):
        b = f"{t}encoder.layer.{i}."
        for part, kv, bias in (("attention", h, text_bias), ("crossattention", img, None)):
            a = attend(lin(h, b + part + ".self.query"), lin(kv, b + part + ".self.key"),
                       lin(kv, b + part + ".self.value"), heads_t, bias)
            h = ln(lin(a, b + part + ".output.dense") + h, b + part + ".output.LayerNorm")
        y = F.gelu(lin(h, b + "intermediate.dense"))
        h = ln(lin(y, b + "output.dense") + h, b + "output.LayerNorm")
    r = h[:, 0]
    for i in (0, 2, 4, 6, 7):
        r = lin(r, f"mlp.layers.{i}")
    return r[:, 0]


def test_imagereward_matches_manual_blip(tiny_imagereward):
    """Independent check of the architecture: plain-torch BLIP from the original checkpoint keys."""
    root = tiny_imagereward[0]
    r = rewards.load("imagereward", checkpoint=str(root / "ImageReward.pt"), med_config=str(root / "med_config.json"),
                     tokenizer=str(root / "tok"), local_files_only=True, device="cpu")
    images = _images(seed=7, size=(32, 32))
    out = r(images, PROMPTS)
    ids = r.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    pix = torch.tensor(np.stack([np.asarray(im, dtype=np.float64).transpose(2, 0, 1) / 255 for im in images]))
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], dtype=torch.float64).view(1, 3, 1, 1)
    ckpt = torch.load(root / "ImageReward.pt", weights_only=True)
    raw = _manual_imagereward(ckpt, (pix - mean) / std, ids["input_ids"], ids["attention_mask"])
    np.testing.assert_allclose(out.details["raw"].numpy(), raw.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.scores.numpy(), ((raw - 0.16717362830052426) / 1.0333394966054072).numpy(),
                               rtol=1e-4, atol=1e-5)


def test_imagereward_rejects_wrong_checkpoint(tmp_path, tiny_imagereward):
    root = tiny_imagereward[0]
    torch.save({"foo": torch.zeros(1)}, tmp_path / "ImageReward.pt")
    (tmp_path / "med_config.json").write_text((root / "med_config.json").read_text())
    with pytest.raises(ValueError, match="no blip.visual_encoder"):
        rewards.load("imagereward", checkpoint=str(tmp_path), tokenizer=str(root / "tok"), local_files_only=True)


# ---------- optional: real weights already in the local HF cache (skipped by default) ----------

REAL = [n for n in __import__("os").environ.get("GENRL_TEST_REAL_REWARDS", "").split(",") if n]


@pytest.mark.skipif(not REAL, reason="set GENRL_TEST_REAL_REWARDS=pickscore,clip_score,... (weights in the HF cache)")
@pytest.mark.parametrize("name", REAL or ["none"])
def test_real_weights_prefer_matching_prompt(name, monkeypatch):
    """With real weights: a red disc on white scores higher with a matching caption than with a wrong one."""
    monkeypatch.undo()  # the real-weights check may read the cache freely (still local_files_only)
    img = Image.new("RGB", (256, 256), "white")
    from PIL import ImageDraw

    ImageDraw.Draw(img).ellipse((48, 48, 208, 208), fill=(220, 20, 20))
    r = rewards.load(name, local_files_only=True)
    out = r([img, img], ["a red circle on a white background", "a photo of a crowded city street at night"])
    if name == "aesthetic":  # prompt-free: just a value on the LAION 1-10 scale
        assert 0.0 < out.scores[0] < 11.0 and out.scores[0] == out.scores[1], out
    else:
        assert out.scores[0] > out.scores[1], out
