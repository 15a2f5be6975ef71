"""BGPO's bound (a reconstruction, genrl/algorithms/bgpo.py) against the ELBO-based objective, and the ELBO
estimator (LLaDA's stratified masked-count form) on tiny models."""

from __future__ import annotations

import random

import pytest
import torch
from dllm_helpers import tiny_dllm

from genrl.algorithms import Batch, StepContext, get_algorithm
from genrl.config import AdvantageConfig, SampleConfig
from genrl.masked_rollout import elbo_term, mc_masks, sequences, stratified_counts
from genrl.policies import load_policy
from genrl.policies.masked_lm import MaskedLMPolicy


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    pol = load_policy(tiny_dllm(str(tmp_path_factory.mktemp("m"))), lora_rank=4)
    with torch.no_grad():  # a non-trivial LoRA so gradients reach every adapter tensor
        for p in pol.trainable_parameters():
            p.add_(0.1 * torch.randn_like(p, generator=torch.Generator().manual_seed(p.numel())))
    return pol


def _ctx(seed=0):
    return StepContext(step=0, update=0, generator=torch.Generator().manual_seed(seed), rng=random.Random(seed),
                       device=torch.device("cpu"))


def _algo(name, **kw):
    cls = get_algorithm(name)
    return cls(cls.Config(name=name, response_length=16, block_length=8, diffusion_steps=4, temperature=1.0, **kw),
               SampleConfig(), AdvantageConfig())


def _batch(policy, algo, n=4):
    from genrl.worlds.puzzles import task_prompts

    prompts = task_prompts("sudoku:train")[0][:n]
    b = algo.rollout(policy, prompts, torch.arange(n) // 2, _ctx())
    b.advantages = torch.tensor([1.3, -0.7, 0.4, -1.9])[:n]
    return b


def _grads(policy):
    return torch.cat([p.grad.reshape(-1).clone() for p in policy.trainable_parameters()])


def test_bound_value_and_gradient_equal_elbo_objective_on_policy(policy):
    n_t = 5
    bgpo, naive = _algo("bgpo", mc_samples=n_t), _algo("elbo_grpo", mc_samples=n_t)
    b = _batch(policy, bgpo)
    policy.zero_grad(set_to_none=True)
    terms = list(bgpo.losses(policy, b, _ctx(1)))
    assert len(terms) == n_t  # one yielded term per Monte-Carlo sample: one graph alive at a time
    total = 0.0
    for loss, _ in terms:
        loss.backward()
        total += float(loss.detach())
    g_bound = _grads(policy)
    policy.zero_grad(set_to_none=True)
    loss_elbo, _ = naive.loss(policy, b, _ctx(1))
    loss_elbo.backward()
    g_elbo = _grads(policy)
    policy.zero_grad(set_to_none=True)
    assert total == pytest.approx(float(loss_elbo.detach()), abs=1e-6)
    assert total == pytest.approx(-float(b.advantages.mean()), abs=1e-6)
    assert g_elbo.abs().max() > 1e-4
    torch.testing.assert_close(g_bound, g_elbo, atol=1e-6, rtol=1e-5)


def test_bound_is_a_lower_bound_off_policy():
    from genrl.algorithms.bgpo import bound_terms

    g = torch.Generator().manual_seed(0)
    adv = torch.randn(64, generator=g)
    x = 0.5 * torch.randn(64, 7, generator=g)  # x_ij = ell_theta - ell_old for 7 MC samples
    bound = bound_terms(adv[:, None], x).mean(1)
    objective = adv * torch.exp(x.mean(1))
    assert (bound <= objective + 1e-6).all() and (bound < objective - 1e-3).any()
    torch.testing.assert_close(bound_terms(adv[:, None], torch.zeros(64, 7)).mean(1), adv)  # touches at x = 0


def test_stored_old_elbo_equals_training_recompute(policy):
    """on_policy=False stores ell_old at rollout; recomputed in training with the same weights: ratio == 1."""
    algo = _algo("bgpo", mc_samples=3, on_policy=False)
    b = _batch(policy, algo)
    assert b.old_elbo.shape == (4, 3)
    tokens, keys, p_len = sequences(policy, b)
    masks, weights = mc_masks(b.mc_seed, 16, 3)
    policy.train()
    for j in range(3):
        torch.testing.assert_close(elbo_term(policy, tokens, keys, p_len, masks[j], weights[j]).detach(),
                                   b.old_elbo[:, j], atol=1e-5, rtol=1e-5)
    for _, m in algo.losses(policy, b.select([0, 1]), _ctx()):
        assert m["log_ratio_abs"] < 1e-5


def test_stratified_counts_cover_all_strata():
    g = torch.Generator().manual_seed(3)
    for length, n in ((16, 16), (16, 4), (7, 3), (512, 16)):
        for _ in range(20):
            c = stratified_counts(length, n, g)
            assert c.min() >= 1 and c.max() <= length and len(c) == n
            if n == length:
                assert sorted(c.tolist()) == list(range(1, length + 1))
            elif length % n == 0:  # one count per stratum of width length / n (cyclically)
                assert len(set(((c - 1) * n // length).tolist())) == n
    masks, weights = mc_masks(torch.tensor([5, 6]), 16, 4)
    torch.testing.assert_close(weights, 16 / masks.sum(-1).float())
    again, _ = mc_masks(torch.tensor([5, 6]), 16, 4)
    assert torch.equal(masks, again)  # the masks are a function of the stored seeds


class _Unigram(MaskedLMPolicy):
    """A context-free mask predictor: its ELBO terms average exactly to log p(o) = sum_i log q(o_i)."""

    def __init__(self, vocab=6):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, generator=torch.Generator().manual_seed(0)))
        self.mask_id, self.eos_id, self.pad_id = vocab - 1, 0, 0

    def logits(self, tokens, keys=None):
        return self.table.expand(*tokens.shape, -1)


def test_elbo_estimator_is_unbiased_for_a_context_free_model():
    pol = _Unigram()
    resp = torch.tensor([[1, 2, 3, 4, 1, 2, 3, 4]])
    b = Batch(prompts=["p"], prompt_ids=[torch.tensor([1, 2])], response=resp, mc_seed=torch.tensor([0]))
    tokens, keys, p_len = sequences(pol, b)
    exact = torch.log_softmax(pol.table.detach(), 0)[resp[0]].sum()
    est = []
    for s in range(300):
        masks, weights = mc_masks(torch.tensor([s]), 8, 4)
        est += [float(elbo_term(pol, tokens, keys, p_len, masks[j], weights[j]).detach()) for j in range(4)]
    mean = torch.tensor(est).mean()
    assert abs(float(mean - exact)) < 0.05 * abs(float(exact))
    # with every position masked the term is the exact log-likelihood (weight L / L = 1)
    full = elbo_term(pol, tokens, keys, p_len, torch.ones(1, 8, dtype=torch.bool), torch.ones(1))
    torch.testing.assert_close(full[0], exact)
