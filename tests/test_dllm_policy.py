"""The dLLM adapter through the real loading paths: bidirectional Gemma, ModernBERT, remote code via auto_map."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from dllm_helpers import tiny_dllm

from genrl.policies import load_policy
from genrl.policies.dllm import TransformersDLLM

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_llada")


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    return tiny_dllm(str(tmp_path_factory.mktemp("gemma")))


def _remote_dir(tmp_path) -> str:
    """Modelling files + config.json with auto_map, weights written by save_pretrained (as a hub repo)."""
    import json

    from genrl.worlds.puzzles.model import build_tokenizer

    d = tmp_path / "tinyllada"
    shutil.copytree(FIXTURE, d)
    cfg = {"model_type": "tinyllada", "architectures": ["TinyLLaDAModelLM"], "vocab_size": 50, "d_model": 16,
           "max_sequence_length": 64, "mask_token_id": 1,
           "auto_map": {"AutoConfig": "configuration_tinyllada.TinyLLaDAConfig",
                        "AutoModel": "modeling_tinyllada.TinyLLaDAModelLM"}}
    (d / "config.json").write_text(json.dumps(cfg))
    from transformers import AutoConfig, AutoModel

    conf = AutoConfig.from_pretrained(str(d), trust_remote_code=True)
    AutoModel.from_config(conf, trust_remote_code=True).save_pretrained(str(d))
    tok = build_tokenizer()
    tok.mask_token = None  # LLaDA's tokenizer has no mask token: the id comes from config.mask_token_id
    tok.save_pretrained(str(d))
    return str(d)


def test_gemma_loads_by_directory_and_is_bidirectional(gemma_dir):
    pol = load_policy(gemma_dir, lora_rank=4)
    assert isinstance(pol, TransformersDLLM) and pol.kind == "masked_lm"
    assert pol.mask_id == pol.tokenizer.mask_token_id and pol.max_length == 64
    ids = torch.tensor(pol.prompt_ids(["sudoku:1234|0000|0000|0000="]))
    a = pol.logits(ids)
    ids2 = ids.clone()
    ids2[0, -2] = 5
    assert (pol.logits(ids2)[0, 0] - a[0, 0]).abs().max() > 0  # an early position sees a later change
    # left padding is invisible to the real tokens (4-D mask; Gemma's own 2-D path would be causal)
    padded = torch.cat([torch.full((1, 3), pol.pad_id), ids], 1)
    keys = torch.cat([torch.zeros(1, 3, dtype=torch.bool), torch.ones_like(ids, dtype=torch.bool)], 1)
    torch.testing.assert_close(pol.logits(padded, keys)[:, 3:], a, atol=1e-5, rtol=1e-5)


def test_lora_save_loads_back_with_peft(gemma_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    pol = load_policy(gemma_dir, lora_rank=4)
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.tensor(pol.prompt_ids(["countdown:1,2,3>6="]))
    want = pol.logits(ids)
    with pol.disable_adapter():
        base = pol.logits(ids)
    assert (want - base).abs().max() > 1e-4
    pol.save_trainable(str(tmp_path / "lora"))
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(gemma_dir), str(tmp_path / "lora"))
    torch.testing.assert_close(peft_model(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
    again = load_policy(gemma_dir, lora_rank=4)
    again.load_trainable(str(tmp_path / "lora"))
    torch.testing.assert_close(again.logits(ids), want, atol=1e-6, rtol=1e-6)


def test_modernbert_masked_lm_loads(tmp_path):
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    from genrl.worlds.puzzles.model import build_tokenizer

    tok = build_tokenizer()
    cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, mask_token_id=1,
                           eos_token_id=2, bos_token_id=2, cls_token_id=2, sep_token_id=2)
    ModernBertForMaskedLM(cfg).save_pretrained(str(tmp_path))
    tok.save_pretrained(str(tmp_path))
    pol = load_policy(str(tmp_path), lora_rank=2)
    out = pol.logits(torch.tensor(pol.prompt_ids(["sudoku:1=", "sudoku:2="])))
    assert out.shape == (2, 9, len(tok)) and torch.isfinite(out).all()


def test_remote_code_only_when_asked(tmp_path):
    d = _remote_dir(tmp_path)
    with pytest.raises(ValueError, match="model.trust_remote_code: true"):
        load_policy(d, lora_rank=2)
    pol = load_policy(d, lora_rank=2, trust_remote_code=True, lora_targets=["mix", "ff_out"])
    assert type(pol.model.base_model.model).__name__ == "TinyLLaDAModelLM"
    assert pol.mask_id == 1 and pol.max_length == 64  # from config.mask_token_id / max_sequence_length
    assert pol.logits(torch.tensor([[3, 4, 1, 1]])).shape == (1, 4, 50)


def test_bad_models_name_the_fix(tmp_path, gemma_dir):
    from transformers import GemmaConfig, GemmaForCausalLM

    from genrl.worlds.puzzles.model import build_tokenizer

    tok = build_tokenizer()
    causal = tmp_path / "causal"
    GemmaForCausalLM(GemmaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2, head_dim=8)).save_pretrained(causal)
    tok.save_pretrained(causal)
    with pytest.raises(ValueError, match="use_bidirectional_attention"):
        load_policy(str(causal), lora_rank=2)
    nomask = tmp_path / "nomask"
    shutil.copytree(gemma_dir, nomask)
    t2 = build_tokenizer()
    t2.mask_token = None
    t2.save_pretrained(str(nomask))
    with pytest.raises(ValueError, match="mask_token_id"):
        load_policy(str(nomask), lora_rank=2)
    assert load_policy(str(nomask), lora_rank=2, mask_token_id=1).mask_id == 1


def test_save_samples_markdown(gemma_dir, tmp_path):
    pol = load_policy(gemma_dir, lora_rank=0)
    path = pol.save_samples(["1234", "a|b"], ["sudoku:x=", "p"], str(tmp_path / "s" / "step_1"), [1.0, 0.25], "t")
    text = open(path).read()
    assert path.endswith(".md") and "| 0 | `sudoku:x=` | `1234` | 1.000 |" in text and "a\\|b" in text


def test_config_key_trust_remote_code(tmp_path):
    from dllm_helpers import tiny_dllm_config

    from genrl.loop import load_model

    d = _remote_dir(tmp_path)
    cfg = tiny_dllm_config(d, str(tmp_path / "run"), {"name": "bgpo"},
                           overrides=["model.lora_rank=2", "model.options={lora_targets: [mix]}"])
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(cfg)
    cfg.model.trust_remote_code = True
    assert load_model(cfg).mask_id == 1
