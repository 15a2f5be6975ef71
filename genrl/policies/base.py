"""The interface every model adapter implements, so the one loop can drive any flow model.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps,
velocity v = eps - x0. `velocity()` takes sigma in this convention and converts to the model's own
timestep convention inside (SD3: 1000*sigma, FLUX: sigma, ...).

Adapters are flat: one file per model family, each subclassing FlowPolicy (continuous flows) or MaskedLMPolicy
(masked diffusion language models, genrl/policies/masked_lm.py) directly, never another adapter.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

Cond = dict[str, torch.Tensor]  # batch-first conditioning tensors (prompt embeddings, pooled, masks, ...)


class TrainablePolicy(nn.Module):
    """What every policy contract shares: the trainable tensors, the reference (adapter disabled), save/load.

      trainable_parameters()             the parameters RL updates (LoRA or full)
      trainable_state() / use_trainable(state)   detached copies and temporary swaps (old / EMA policies)
      disable_adapter()                  context manager: inside it the policy is the frozen base/reference model
      save_trainable(dir) / load_trainable(dir)   safetensors; the format a user loads back
      save_samples(outputs, captions, stem, scores, title)   a file people look at (returns its path)
    """

    #: which contract the policy implements ("flow": FlowPolicy, "masked_lm": MaskedLMPolicy); algorithms check it
    kind = "flow"

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def disable_adapter(self):
        raise NotImplementedError
        yield

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """A detached copy of the trainable tensors (e.g. NFT's "old" policy, AWM's EMA policy)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    @contextlib.contextmanager
    def use_trainable(self, state: dict[str, torch.Tensor]):
        """Temporarily run with `state` (from trainable_state) in place of the trainable tensors; restores after.
        Use under torch.no_grad() for old/EMA-policy forwards."""
        params = dict(self.named_parameters())
        saved = {n: params[n].detach().clone() for n in state}
        with torch.no_grad():
            for n, t in state.items():
                params[n].copy_(t)
        try:
            yield self
        finally:
            with torch.no_grad():
                for n, t in saved.items():
                    params[n].copy_(t)

    def compile_targets(self) -> dict[str, nn.Module]:
        """The modules `run.compile` compiles (genrl/compile.py): by default the denoiser under the adapters' usual
        attribute names (`transformer`, `model`)."""
        return {n: m for n in ("transformer", "model") if isinstance(m := getattr(self, n, None), nn.Module)}

    def save_trainable(self, directory: str) -> None:
        raise NotImplementedError

    def load_trainable(self, directory: str) -> None:
        raise NotImplementedError

    def metadata_for(self, prompts: list[str]) -> list[dict[str, Any]] | None:
        """Optional per-prompt metadata passed to rewards (e.g. the shapes world's structured spec)."""
        return None


class FlowPolicy(TrainablePolicy):
    """A text-conditioned flow model wrapped for RL.

    Required methods (plus TrainablePolicy's):
      encode(prompts) -> Cond            conditioning for a list of prompts (cache per unique prompt)
      velocity(x, sigma, cond) -> v      sigma: 0-d tensor or [B]; returns the model's velocity, same shape as x
      decode(x) -> images                float [B, 3, H, W] in [0, 1]
      noise_shape(batch, resolution)     shape of the initial noise (latent or pixel space)
    """

    #: dtype in which SDE / loss math runs regardless of model dtype
    compute_dtype = torch.float32
    #: what decode() returns: "image" ([B, 3, H, W]) or "video" ([B, F, 3, H, W]); rewards are checked against it
    sample_format = "image"

    def encode(self, prompts: list[str]) -> Cond:
        raise NotImplementedError

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def noise_shape(self, batch: int, resolution: int | None = None) -> tuple[int, ...]:
        raise NotImplementedError

    def save_samples(self, outputs: list[torch.Tensor], captions: list[str], stem: str,
                     scores: list[float] | None = None, title: str | None = None) -> str:
        """Write evaluation samples for people to look at; returns the file written. Images: a PNG grid
        (`stem`.png). Adapters of other modalities override this (GIFs for clips, turntables for 3D)."""
        from genrl.logging_utils import save_grid

        return save_grid(torch.stack(outputs), captions, stem + ".png", scores, title=title)
