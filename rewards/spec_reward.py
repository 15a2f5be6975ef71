"""Base of the embedded worlds' exact rewards: the truth per sample is a structured spec, taken from
metadata[i]["spec"] (validated) or parsed from the prompt with the world's grammar; `score` chooses partial credit
(default) or strict 0/1 as the training score."""

from __future__ import annotations

from collections.abc import Callable

from rewards.base import Reward


class SpecReward(Reward):
    parse: Callable[[str], dict]  # the world's prompt parser (a staticmethod in subclasses)
    validate: Callable[[dict], None]

    def __init__(self, score: str = "partial"):
        if score not in ("partial", "strict"):
            raise ValueError(f"{self.name} reward: score must be 'partial' or 'strict', got {score!r}")
        self.score_kind = score

    def _specs(self, prompts, metadata) -> list[dict]:
        specs = []
        for i, prompt in enumerate(prompts):
            spec = (metadata[i] or {}).get("spec") if metadata is not None else None
            if spec is None:
                spec = type(self).parse(prompt)
            else:
                type(self).validate(spec)
            specs.append(spec)
        return specs

    def check_inputs(self, prompts, metadata=None) -> None:
        self._specs(prompts, metadata)
