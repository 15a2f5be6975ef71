"""A new condition for a pre-trained flow transformer (CTRL, other_methods.md §1.4): a label embedding added to
the timestep embedding.

    E = nn.Embedding(n_labels + 1, temb_dim), zero-initialised; row n_labels is NULL (the unconditional branch)
    temb' = time_text_embed(t, pooled) + E[y]          (SD3 / SD3.5 / the shapes model: temb; FLUX: the same)

Because E starts at zero the conditioned model starts exactly at the pre-trained one. The NULL row's gradient is
zeroed by a hook, so it stays 0 forever: with y = NULL (or no label) the model is the pre-trained model plus its
LoRA. `condition_disabled` (used by every adapter's `disable_adapter()`) turns the embedding off, so the frozen
base is "LoRA disabled AND no condition".

The embedding is a submodule of the transformer (`transformer.genrl_condition`), so it follows `.to()`, is listed
by `trainable_parameters()` (after the LoRA tensors), and is in `trainable_state()` (checkpoints, EMA). It is saved
beside the LoRA as `condition.safetensors` (key "weight") + `condition.json` ({"labels": [...], "dim": D}); the
adapters' `load_trainable` attach and load it back.

Labels travel in the conditioning dict: `cond["condition"]` = long [B] of label ids (`label_ids(policy, names)`);
the adapters' velocity() wraps the model call in `condition_scope(transformer, cond, batch)`.

`min_sigma` (condition.json; 0 = off): the fine-tuned model (LoRA + condition) acts only at sigma >= min_sigma
(sigma = 1 is noise); below it the sampler uses the pre-trained base. CTRL's `algorithm.tuned_min_sigma` sets it;
`gated_velocity` applies it, and every conditioned sampler here (CTRL's rollout and evaluation, `condition_factory`,
so `genrl sample --condition`) goes through it.
"""

from __future__ import annotations

import contextlib
import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn

ATTR = "genrl_condition"
WEIGHTS, META = "condition.safetensors", "condition.json"
NULL = "<null>"  # the name of the unconditional label


class ConditionEmbedding(nn.Module):
    """Zero-initialised label embedding with a NULL last row whose gradient is always zero."""

    def __init__(self, labels: list[str], dim: int, min_sigma: float = 0.0):
        super().__init__()
        labels = [str(x) for x in labels]
        if len(labels) < 1 or len(set(labels)) != len(labels) or NULL in labels:
            raise ValueError(f"condition labels must be distinct, non-empty and not {NULL!r}; got {labels}")
        self.labels = labels
        self.weight = nn.Parameter(torch.zeros(len(labels) + 1, int(dim)))
        self.weight.register_hook(_zero_null_row)
        self.enabled = True
        self.min_sigma = float(min_sigma)
        self._ids: torch.Tensor | None = None

    @property
    def null_id(self) -> int:
        return len(self.labels)

    def ids(self, names: list[str | None]) -> torch.Tensor:
        """Label names -> long ids; None / "" / NULL -> the NULL row. Unknown names: one-line ValueError."""
        out = []
        for n in names:
            if n is None or n == "" or n == NULL:
                out.append(self.null_id)
            elif str(n) in self.labels:
                out.append(self.labels.index(str(n)))
            else:
                raise ValueError(f"condition label {n!r} is not in this model's trained label set {self.labels}; "
                                 "pick one of those")
        return torch.tensor(out, dtype=torch.long, device=self.weight.device)

    def extra_repr(self) -> str:
        return f"labels={self.labels}, dim={self.weight.shape[1]}, min_sigma={self.min_sigma}"


def _zero_null_row(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.clone()
    grad[-1] = 0
    return grad


def _add_hook(module: nn.Module, _inputs, output: torch.Tensor):
    emb: ConditionEmbedding = module._genrl_condition_ref[0]  # noqa: SLF001
    if not emb.enabled or emb._ids is None:  # noqa: SLF001
        return output
    ids = emb._ids.to(output.device)  # noqa: SLF001
    if ids.shape[0] == 1 and output.shape[0] > 1:
        ids = ids.expand(output.shape[0])
    return output + emb.weight[ids].to(output.dtype)


def temb_dim(transformer) -> int:
    """Width of the transformer's timestep embedding (= inner dim for SD3 / FLUX: heads x head_dim)."""
    c = transformer.config
    return int(c.num_attention_heads * c.attention_head_dim)


def attach_condition(transformer, labels: list[str], min_sigma: float = 0.0) -> ConditionEmbedding:
    """Add a zero-initialised condition embedding for `labels` (+ NULL) to `transformer` (once); `min_sigma`: see
    the module docstring (an existing embedding takes the given value)."""
    if not 0.0 <= float(min_sigma) < 1.0:
        raise ValueError(f"condition min_sigma must be in [0, 1) (sigma = 1 is noise), got {min_sigma}")
    if get_condition(transformer) is not None:
        emb = get_condition(transformer)
        if emb.labels != [str(x) for x in labels]:
            raise ValueError(f"this model already has the condition labels {emb.labels}; got {list(labels)}")
        emb.min_sigma = float(min_sigma)
        return emb
    if not hasattr(transformer, "time_text_embed"):
        raise ValueError(f"{type(transformer).__name__} has no time_text_embed; the condition embedding supports "
                         "SD3 / SD3.5, FLUX and the shapes model")
    p = next(transformer.parameters())
    emb = ConditionEmbedding(labels, temb_dim(transformer), min_sigma).to(p.device)
    transformer.add_module(ATTR, emb)
    # the hook finds the embedding through a list (not a registered submodule of time_text_embed)
    transformer.time_text_embed._genrl_condition_ref = [emb]  # noqa: SLF001
    transformer.time_text_embed.register_forward_hook(_add_hook)
    return emb


def get_condition(transformer) -> ConditionEmbedding | None:
    return getattr(transformer, ATTR, None)


def label_ids(transformer, names: list[str | None]) -> torch.Tensor:
    emb = get_condition(transformer)
    if emb is None:
        raise ValueError("this model has no condition embedding; train one with algorithm.name=ctrl, or load a "
                         "LoRA directory that has condition.json")
    return emb.ids(names)


@contextlib.contextmanager
def condition_scope(transformer, cond: dict, batch: int):
    """Within: the transformer's timestep embedding gets E[cond["condition"]] added (nothing without a label)."""
    emb = get_condition(transformer)
    ids = cond.get("condition") if isinstance(cond, dict) else None
    if emb is None:
        if ids is not None:
            raise ValueError("a condition label was given but this model has no condition embedding")
        yield
        return
    if ids is not None and ids.shape[0] not in (1, batch):
        raise ValueError(f"cond['condition'] has {ids.shape[0]} labels for a batch of {batch}")
    prev, emb._ids = emb._ids, ids  # noqa: SLF001
    try:
        yield
    finally:
        emb._ids = prev  # noqa: SLF001


@contextlib.contextmanager
def condition_disabled(transformer):
    """Within: the condition embedding is off (the frozen base model has no condition)."""
    emb = get_condition(transformer)
    if emb is None:
        yield
        return
    prev, emb.enabled = emb.enabled, False
    try:
        yield
    finally:
        emb.enabled = prev


def save_condition(transformer, directory: str) -> None:
    emb = get_condition(transformer)
    if emb is None:
        return
    os.makedirs(directory, exist_ok=True)
    save_file({"weight": emb.weight.detach().cpu().contiguous()}, os.path.join(directory, WEIGHTS))
    with open(os.path.join(directory, META), "w") as f:
        json.dump({"labels": emb.labels, "dim": int(emb.weight.shape[1]), "min_sigma": emb.min_sigma}, f, indent=2)


def load_condition(transformer, directory: str) -> ConditionEmbedding | None:
    """Attach (if needed) and load the condition saved in `directory`; None when it has none."""
    meta = os.path.join(directory, META)
    if not os.path.isfile(meta):
        return None
    with open(meta) as f:
        info = json.load(f)
    if int(info["dim"]) != temb_dim(transformer):
        raise ValueError(f"{meta}: condition width {info['dim']} does not match this model's timestep embedding "
                         f"({temb_dim(transformer)}); load it on the model it was trained on")
    emb = attach_condition(transformer, info["labels"], float(info.get("min_sigma", 0.0)))
    w = load_file(os.path.join(directory, WEIGHTS))["weight"]
    with torch.no_grad():
        emb.weight.copy_(w.to(emb.weight.device, emb.weight.dtype))
    return emb


def gated_velocity(policy, tuned, base):
    """velocity(x, sigma): `tuned` where sigma >= the condition's min_sigma, else `base` with the adapter disabled
    (the pre-trained model). `tuned` itself when there is no gate. sigma: 0-d or [B], all on one side."""
    emb = get_condition(policy.transformer)
    lo = 0.0 if emb is None else emb.min_sigma
    if lo <= 0:
        return tuned

    def fn(x, s):
        below = torch.as_tensor(s).reshape(-1) < lo
        if bool(below.all()):
            with policy.disable_adapter():
                return base(x, s)
        if bool(below.any()):
            raise ValueError(f"a batch mixes sigmas below and above the condition's min_sigma {lo}; sample with "
                             "one sigma per call")
        return tuned(x, s)

    return fn


def condition_factory(label: str, cfg_scale: float = 1.0, condition_scale: float | None = None, inner=None):
    """A `velocity_fn_factory(policy, cond, uncond)` for genrl.shapes.generate.generate that samples with `label`.

    condition_scale None: CFG at `cfg_scale` with the negative "" + NULL label (the reference's CFG: both the prompt
    and the condition are guided). condition_scale W: guidance over the condition only, negative = the same prompt
    with the NULL label: v = v(c, NULL) + W (v(c, y) - v(c, NULL)). `inner(policy, cond, uncond)` (e.g. RL
    Guidance) replaces the plain CFG velocity. Below the condition's min_sigma the base samples (prompt CFG at
    cfg_scale, negative "")."""
    import samplers

    def factory(policy, cond, uncond):
        return gated_velocity(policy, tuned_factory(policy, cond, uncond), _cfg_fn(policy, cond, uncond, cfg_scale))

    def tuned_factory(policy, cond, uncond):
        n = next(v for v in cond.values() if isinstance(v, torch.Tensor)).shape[0]
        c = {**cond, "condition": label_ids(policy.transformer, [label] * n)}
        if condition_scale is not None:
            u, scale = {**cond, "condition": label_ids(policy.transformer, [None] * n)}, float(condition_scale)
        else:
            m = next(v for v in uncond.values() if isinstance(v, torch.Tensor)).shape[0]
            u, scale = {**uncond, "condition": label_ids(policy.transformer, [None] * m)}, float(cfg_scale)
        if inner is not None:
            return inner(policy, c, u)
        return _cfg_fn(policy, c, u, scale)

    def _cfg_fn(policy, c, u, scale):
        if scale == 1.0:
            return lambda x, s: policy.velocity(x, s, c)
        both = {k: torch.cat([u[k].expand_as(c[k]) if u[k].shape[0] == 1 else u[k], c[k]]) for k in c}

        def fn(x, s):
            v_u, v_c = policy.velocity(torch.cat([x, x]), s, both).chunk(2)
            return samplers.cfg(v_u, v_c, scale)

        return fn

    return factory
