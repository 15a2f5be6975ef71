"""genrl.lean_lora: the short LoRA forward is peft's forward bit for bit, and steps aside where it does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora.layer import Linear as PeftLinear

from genrl.lean_lora import LeanLoraLinear, make_lean
from genrl.lora import adapters_disabled


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(12, 16), nn.Linear(16, 12, bias=False)

    def forward(self, x):
        return self.k(torch.tanh(self.q(x)))


def _pair(dtype=torch.float32, dropout=0.0):
    """Two identical LoRA nets (non-zero B), the second made lean; LoRA weights fp32 as genrl keeps them."""
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        net = Net().to(dtype)
        torch.manual_seed(1)
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["q", "k"], lora_dropout=dropout,
                                           init_lora_weights="gaussian"), net)
        for n, p in net.named_parameters():
            p.requires_grad_("lora_" in n)
            if "lora_" in n:
                p.data = torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.3
        nets.append(net)
    assert make_lean(nets[1]) == 2 and all(type(m) is LeanLoraLinear for m in (nets[1].q, nets[1].k))
    return nets


def _fwd_bwd(net, x):
    for p in net.parameters():
        p.grad = None
    y = net(x)
    y.float().square().sum().backward()
    return y.detach(), [p.grad.clone() for p in net.parameters() if p.requires_grad]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_forward_and_gradients_are_peft_bit_for_bit(dtype):
    peft_net, lean = _pair(dtype)
    x = torch.randn(5, 7, 12).to(dtype)
    (y0, g0), (y1, g1) = _fwd_bwd(peft_net, x), _fwd_bwd(lean, x)
    assert y0.dtype == y1.dtype == dtype and torch.equal(y0, y1)  # base dtype out, as peft casts back
    assert all(torch.equal(a, b) for a, b in zip(g0, g1)) and len(g1) == 4
    with torch.no_grad(), adapters_disabled(lean):  # genrl's reference switch: the base layers alone
        base = lean.k.base_layer(torch.tanh(lean.q.base_layer(x)))
        assert torch.equal(lean(x), base) and not torch.equal(base, y1)
    assert make_lean(lean, False) == 2 and type(lean.q) is PeftLinear
    assert torch.equal(_fwd_bwd(lean, x)[0], y0)


def test_cases_it_does_not_cover_fall_through_to_peft(monkeypatch):
    """Dropout, a hook on the LoRA weights' modules (what DeepSpeed ZeRO-3 registers), a merged adapter and
    two active adapters all take peft's own forward; GENRL_LEAN_LORA=0 leaves the layers alone."""
    peft_net, lean = _pair(dropout=0.5)
    x = torch.randn(3, 12)
    torch.manual_seed(5)
    y0 = peft_net(x)
    torch.manual_seed(5)
    assert torch.equal(lean(x), y0)  # same dropout draws: peft's path
    peft_net, lean = _pair()
    seen = []
    lean.q.lora_A["default"].register_forward_hook(lambda *a: seen.append(1))
    assert torch.equal(lean(x), peft_net(x)) and seen == [1]
    peft_net, lean = _pair()
    for net in (peft_net, lean):  # a second adapter, both active: peft's loop over adapters
        inject_adapter_in_model(LoraConfig(r=2, target_modules=["q"], init_lora_weights="gaussian"), net,
                                adapter_name="other")
        net.q.set_adapter(["default", "other"])
    with torch.no_grad():
        assert torch.equal(lean(x), peft_net(x))
        lean.q.merge(adapter_names=["default"])
        peft_net.q.merge(adapter_names=["default"])
        assert lean.q.merged and torch.equal(lean(x), peft_net(x))
    monkeypatch.setenv("GENRL_LEAN_LORA", "0")
    net = Net()
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["q"]), net)
    assert make_lean(net) == 0 and type(net.q) is PeftLinear
