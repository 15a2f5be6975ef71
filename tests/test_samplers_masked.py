"""samplers.masked_diffusion_sample (LLaDA-style block-wise masked diffusion decoding)."""

import pytest
import torch

import samplers

MASK, V = 9, 10


def static_logits(b, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(b, length, V, generator=g) * 3
    return lambda x: table[:, : x.shape[1]].clone()


def run(logits_fn, prompt, **kw):
    args = dict(gen_length=12, block_length=4, steps=9, mask_id=MASK)
    args.update(kw)
    return samplers.masked_diffusion_sample(logits_fn, prompt, **args)


def test_num_transfer_tokens_even_split():
    assert samplers.num_transfer_tokens(torch.tensor([8, 4]), 3).tolist() == [[3, 3, 2], [2, 1, 1]]


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_unmasks_everything_and_respects_blocks(remasking, temperature):
    prompt = torch.randint(0, MASK, (3, 5), generator=torch.Generator().manual_seed(1))
    out = run(static_logits(3, 17), prompt, remasking=remasking, temperature=temperature,
              generator=torch.Generator().manual_seed(2))
    assert out.tokens.shape == (3, 17) and torch.equal(out.tokens[:, :5], prompt)
    assert (out.response != MASK).all() and out.response.shape == (3, 12)
    order = out.unmask_order
    assert order.min() >= 0 and order.max() <= 8
    blocks = order.view(3, 3, 4)  # [B, block, position]: steps_per_block = 3
    for k in range(3):
        assert (blocks[:, k] >= 3 * k).all() and (blocks[:, k] < 3 * (k + 1)).all()
        if k:
            assert (blocks[:, k].min(dim=1).values > blocks[:, k - 1].max(dim=1).values).all()
    for step in range(9):  # fixed count per step: 4 tokens over 3 steps -> 2, 1, 1
        assert ((order == step).sum(dim=1) == [2, 1, 1][step % 3]).all()


def test_greedy_tokens_are_argmax_and_low_confidence_order():
    length = 3 + 8
    # position j's prediction gets confidence decreasing with j -> unmasked left to right within a block
    logits = torch.zeros(1, length, V)
    for j in range(length):
        logits[0, j, j % MASK] = 20.0 - j
    out = run(lambda x: logits.clone(), torch.zeros(1, 3, dtype=torch.long), gen_length=8, block_length=8, steps=8)
    assert out.response.tolist() == [[j % MASK for j in range(3, 11)]]
    assert out.unmask_order.tolist() == [list(range(8))]


def test_mask_token_is_never_predicted():
    logits = torch.zeros(2, 10, V)
    logits[..., MASK] = 100.0  # the model "prefers" the mask token
    logits[..., 4] = 1.0
    out = run(lambda x: logits.clone(), torch.zeros(2, 2, dtype=torch.long), gen_length=8, block_length=4, steps=4)
    assert (out.response == 4).all()


def test_temperature_samples_the_softmax_and_is_reproducible():
    n = 4000
    logits = torch.zeros(1, n + 1, V)
    logits[..., 0], logits[..., 1] = 0.0, 1.0  # tokens 2..8 at 0 too
    p1 = torch.softmax(logits[0, 0, :MASK], -1)[1].item()

    def fn(x):
        return logits.clone()

    kw = dict(gen_length=n, block_length=n, steps=1, temperature=1.0)
    a = run(fn, torch.zeros(1, 1, dtype=torch.long), generator=torch.Generator().manual_seed(0), **kw)
    b = run(fn, torch.zeros(1, 1, dtype=torch.long), generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a.tokens, b.tokens)
    freq = (a.response == 1).float().mean().item()
    assert abs(freq - p1) < 4 * (p1 * (1 - p1) / n) ** 0.5


def test_with_a_real_bidirectional_model():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=32)).eval()
    out = run(lambda x: model(input_ids=x).logits, torch.tensor([[1, 2, 3]]))
    assert (out.response != MASK).all() and sorted(out.unmask_order[0].tolist()) == sorted(
        [s for k in range(3) for s in (3 * k, 3 * k, 3 * k + 1, 3 * k + 2)])


@pytest.mark.parametrize("kw,match", [
    (dict(gen_length=10, block_length=4), "multiple of block_length"),
    (dict(steps=4), "multiple of the number of blocks"),
    (dict(remasking="top_p"), "remasking must be one of"),
    (dict(temperature=-1.0), "temperature"),
    (dict(steps=0), "steps"),
])
def test_bad_masked_inputs(kw, match):
    with pytest.raises(ValueError, match=match):
        run(static_logits(1, 20), torch.zeros(1, 2, dtype=torch.long), **kw)


def test_bad_logits_shape():
    with pytest.raises(ValueError, match="logits_fn"):
        run(lambda x: torch.zeros(x.shape[0], 3, V), torch.zeros(1, 2, dtype=torch.long))
