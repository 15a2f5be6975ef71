"""Worker for tests/test_distributed_equivalence.py: `torchrun --nproc_per_node N tests/distributed_worker.py CFG OUT
[--resume] [--nan-step0]` (or plain python for one process); with --resume, CFG is a run directory's config.yaml
and the run continues from its latest checkpoint; with --nan-step0 the last rank's loss terms are NaN in step 0.
Trains with the one loop and records, per step, the advantages of the whole global batch (gathered in global sample
order) and the final trainable weights (main process only)."""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

from genrl.config import load_config
from genrl.loop import Trainer


class RecordingTrainer(Trainer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        from torch.distributed.tensor import DTensor

        sharded = any(isinstance(p, DTensor) for p in self.policy.parameters())  # FSDP2 launch: frozen base sharded
        self.recorded: dict[str, torch.Tensor] = {"sharded": torch.tensor(int(sharded)),
                                                  "deepspeed": torch.tensor(int(self.engine is not None))}

    def compute_advantages(self, batch, step):
        chosen, info = super().compute_advantages(batch, step)
        self.recorded[f"adv_step{step}"] = self._gather(info["adv"].float().cpu())
        self.recorded[f"reward_step{step}"] = self._gather(batch.rewards.float().cpu())
        return chosen, info


def _nan_in_step0(trainer: Trainer) -> None:
    losses = trainer.algo.losses

    def poisoned(policy, mb, ctx):
        for loss, metrics in losses(policy, mb, ctx):
            yield (loss * float("nan") if ctx.step == 0 else loss), metrics

    if trainer.rank == trainer.world - 1:
        trainer.algo.losses = poisoned


def main(cfg_path: str, out: str, resume: bool = False, nan_step0: bool = False) -> None:
    overrides = ["train.steps=2"] if resume else []
    trainer = RecordingTrainer(load_config(cfg_path, overrides), resume=resume, progress=False)
    if nan_step0:
        _nan_in_step0(trainer)
    trainer.run()
    if trainer.main:
        state = {k: v.detach().cpu().contiguous() for k, v in trainer.policy.trainable_state().items()}
        save_file({**state, **trainer.recorded}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], resume="--resume" in sys.argv[3:], nan_step0="--nan-step0" in sys.argv[3:])
