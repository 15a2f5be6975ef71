"""The contract of masked diffusion language models (LLaDA-style dLLMs) wrapped for RL.

Masked diffusion convention: t in [0, 1], t = 1 every response token is the mask token, t = 0 clean text; the
prompt is never masked. A policy exposes token ids and the mask predictor's logits; sampling
(samplers.masked_diffusion_sample) and ELBO estimates (genrl/masked_rollout.py) are built on top of it.

Required (plus TrainablePolicy's trainable_parameters / trainable_state / use_trainable / disable_adapter /
save_trainable / load_trainable):
  mask_id, eos_id, pad_id           token ids (ints)
  max_length                        the model's context in tokens (None = unbounded)
  prompt_ids(prompts)               list[list[int]]: the tokenised prompts (chat template applied if asked)
  logits(tokens, keys)              tokens [B, L] long, keys [B, L] bool (False = padding, or None) ->
                                    float32 logits [B, L, V] of the mask predictor
  decode(response)                  [B, L] response ids -> texts (cut at the first end-of-sequence token)
"""

from __future__ import annotations

import html
import os

import torch

from genrl.policies.base import TrainablePolicy


class MaskedLMPolicy(TrainablePolicy):
    kind = "masked_lm"
    mask_id: int
    eos_id: int
    pad_id: int
    max_length: int | None = None

    def prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def logits(self, tokens: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, response: torch.Tensor) -> list[str]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_samples(self, outputs: list[str], captions: list[str], stem: str, scores: list[float] | None = None,
                     title: str | None = None) -> str:
        """A markdown table of prompts, completions and scores (`stem`.md); returns the path."""
        path = stem + ".md"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

        def cell(s: str) -> str:
            return html.escape(str(s)).replace("|", "\\|").replace("\n", "<br>")

        lines = [f"# {title}" if title else "# samples", "", "| # | prompt | completion | score |", "|---|---|---|---|"]
        for i, (out, cap) in enumerate(zip(outputs, captions)):
            sc = "" if scores is None else f"{float(scores[i]):.3f}"
            lines.append(f"| {i} | `{cell(cap)}` | `{cell(out)}` | {sc} |")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path
