"""THE training loop, shared by every algorithm (see genrl/algorithms/base.py for the step anatomy).

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v = eps - x0.

Multi-process (accelerate launch / torchrun): every rank holds the full policy; the K-repeat sampler gives each
rank its share of every group; rewards and group ids are gathered (accelerator.gather) so every rank computes
the same advantages on complete groups and keeps its own slice; gradients of the trainable tensors are
averaged over ranks before each optimizer update (one flat all-reduce). Only the main process writes files
and shows the progress bar.

Determinism: all randomness of step s (prompt choice, noise, SDE noise, window start, shuffles, NFT/AWM
re-noising via ctx.generator) derives from (run.seed, s, rank). A resumed run therefore continues exactly,
given the weights, optimizer, scheduler, EMA and algorithm state from the checkpoint (RNG states of torch,
python and numpy are restored too).

Faults: groups with a non-finite reward are dropped (counted in train/nonfinite_groups); a step where every
group is dropped aborts. A non-finite loss term is not back-propagated and its update is skipped (counted in
train/skipped_updates); run.max_nonfinite_in_row consecutive skips abort. Checkpoints are atomic.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from genrl.advantages import group_masks
from genrl.algorithms import Batch, StepContext, get_algorithm
from genrl.checkpoint import (
    clean_interrupted,
    find_resumable,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from genrl.config import Config, save_config
from genrl.data import KRepeatSampler, PromptSet, load_prompts
from genrl.ema import EMA
from genrl.logging_utils import MetricsLogger, before_after, plot_curves, read_metrics


class TrainingAborted(RuntimeError):
    """Training cannot continue (all rewards non-finite, too many non-finite losses)."""


@dataclass
class RunResult:
    run_dir: str
    steps_done: int
    first_eval: dict | None
    last_eval: dict | None
    samples_dir: str
    curves: str | None


def per_sample(details: dict, n: int) -> dict[str, torch.Tensor]:
    """The per-sample numeric details of a reward output ([n] float or bool tensors; flags become 0/1), as float
    CPU tensors: what the loop logs as train/reward_<name> and eval/<name>."""
    return {k: v.detach().float().cpu().reshape(-1) for k, v in details.items()
            if isinstance(v, torch.Tensor) and v.numel() == n and (v.is_floating_point() or v.dtype == torch.bool)}


def _mix(*xs: int) -> int:
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (int(x) & 0xFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def reward_input(b: Batch):
    """What the reward scores: the batch's `outputs` (texts, clips, assets, ...) or, for image flows, `images`."""
    return b.outputs if b.get("outputs") is not None else b.images


def check_writable(run_dir: str) -> None:
    """One-line error, before any model loading, if run.dir cannot be created or written into."""
    path = os.path.abspath(run_dir)
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ValueError(f"run.dir {run_dir!r} cannot be created: {probe} is a file; choose another run.dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"run.dir {run_dir!r} cannot be written: no write permission in {probe} (or a read-only "
                         "file system); choose a writable run.dir")


def _dir_nonempty(path: str) -> bool:
    return os.path.isdir(path) and bool(os.listdir(path))


def build_reward(cfg: Config):
    import rewards

    for name in cfg.reward_options:
        if name not in cfg.rewards:
            raise ValueError(f"reward_options has {name!r}, which is not in rewards ({', '.join(cfg.rewards)})")
    for name in cfg.rewards:
        if name not in rewards.available():
            import difflib

            close = difflib.get_close_matches(name, rewards.available(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown reward {name!r} in rewards{hint}; available: {', '.join(rewards.available())}")
    main = rewards.combine(dict(cfg.rewards), dict(cfg.reward_options))
    if cfg.advantage.stages:
        from genrl.hierarchy import build_staged_reward

        return build_staged_reward(main, cfg.advantage.stages)
    return main


def load_model(cfg: Config):
    from genrl.policies import load_policy

    opts = dict(cfg.model.options)
    opts["lora_rank"] = cfg.model.lora_rank
    if cfg.model.trust_remote_code:
        opts["trust_remote_code"] = True
    if cfg.model.lora_alpha is not None:
        opts["lora_alpha"] = cfg.model.lora_alpha
    return load_policy(cfg.model.path, cfg.model.family, **opts)


class Trainer:
    """Build everything from a Config, then `run()`. `resume=True` continues the run in cfg.run.dir."""

    def __init__(self, cfg: Config, resume: bool = False, progress: bool = True, log_fn=print):
        self.cfg, self.resume, self.progress, self.log_fn = cfg, resume, progress, log_fn
        run_dir = cfg.run.dir
        # ---- validate all user input BEFORE anything is written ----
        if not resume and _dir_nonempty(run_dir):
            raise ValueError(
                f"run.dir {run_dir!r} already exists and is not empty; pick a new run.dir=... or continue it with "
                f"`genrl train --resume {run_dir}`"
            )
        check_writable(run_dir)
        self.train_prompts: PromptSet = load_prompts(cfg.data.prompts, "data.prompts")
        # eval sets: (metric prefix, prompts); the held-out set, and optionally a fixed subset of the training prompts
        self.eval_sets: list[tuple[str, PromptSet]] = []
        if cfg.eval.every > 0:
            held_out = load_prompts(cfg.eval.prompts, "eval.prompts").subset(cfg.eval.num_prompts)
            self.eval_sets.append(("eval/", held_out))
            if cfg.eval.train_prompts > 0:
                self.eval_sets.append(("eval/train/", self.train_prompts.subset(cfg.eval.train_prompts)))
        algo_cls = get_algorithm(cfg.algorithm.name)
        self.algo = algo_cls(cfg.algorithm, cfg.sample, cfg.advantage)
        self.reward_fn = build_reward(cfg)

        from genrl.threads import auto_threads

        self.threads = cfg.run.threads or auto_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        torch.set_num_threads(self.threads)
        from accelerate import Accelerator

        # plain `torchrun` on a CPU-only machine: accelerate needs cpu=True to form the gloo process group
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.acc = Accelerator(mixed_precision=cfg.run.mixed_precision, cpu=multi_cpu)
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        self.main = self.acc.is_main_process
        if self.main and not cfg.run.threads and progress:
            self.log_fn(f"genrl: {self.threads} torch thread(s) (run.threads=0: the cores idle at start)")
        self.device = self.acc.device
        if self.device.type == "cpu":
            from genrl.malloc import keep_freed_memory

            keep_freed_memory()
        per_rank = cfg.sample.group_size * cfg.sample.groups_per_step
        if per_rank % self.world:
            raise ValueError(f"sample.group_size * sample.groups_per_step = {per_rank} must be divisible by the "
                             f"number of processes ({self.world})")
        self.per_rank = per_rank // self.world
        for key, bs in (("sample.batch_size", cfg.sample.batch_size), ("train.batch_size", cfg.train.batch_size)):
            if self.per_rank % bs:
                raise ValueError(f"{key}={bs} must divide the samples per process per step ({self.per_rank} = "
                                 "group_size * groups_per_step / processes)")
        self.sampler = KRepeatSampler(len(self.train_prompts), cfg.sample.group_size, cfg.sample.groups_per_step,
                                      self.world, self.rank, cfg.run.seed)

        # ---- model (same LoRA init on every rank) ----
        torch.manual_seed(cfg.run.seed)
        self.policy = load_model(cfg).to(self.device)
        # inputs the algorithm or the reward cannot handle fail here, before anything is written: e.g. algorithm /
        # model kinds that do not match, prompts longer than the context, prompts outside a world's grammar
        checked = {"data.prompts": self.train_prompts}
        if self.eval_sets:
            checked["eval.prompts"] = self.eval_sets[0][1]
        self.algo.check_inputs(self.policy, {k: ps.prompts for k, ps in checked.items()})
        for ps in [self.train_prompts] + [p for _, p in self.eval_sets]:
            meta = ps.metadata if ps.metadata is not None else getattr(self.policy, "metadata_for", lambda _: None)(
                ps.prompts)
            self.reward_fn.check_inputs(ps.prompts, meta)
        if getattr(self.policy, "sample_format", None):  # e.g. an image reward on a video model
            self.reward_fn.check_sample_format(self.policy.sample_format)
        from genrl.distributed import shard_policy

        self.algo.configure_policy(self.policy)  # e.g. CTRL adds its condition embedding (before the optimizer)
        # FSDP launch config: shard the frozen base (LoRA stays replicated)
        sharded = shard_policy(self.policy, self.acc)
        self.inference_mode = not sharded and os.environ.get("GENRL_INFERENCE_MODE", "1") != "0"
        if cfg.run.compile:
            from genrl.compile import compile_policy

            compiled = compile_policy(self.policy, self.device, self.log_fn if self.main else lambda _: None)
            if compiled and self.main and progress:
                self.log_fn(f"genrl: run.compile: compiling {', '.join(compiled)} on first use")
        self.params = list(self.policy.trainable_parameters())
        if not self.params:
            raise ValueError("the policy has no trainable parameters; set model.lora_rank > 0")
        t = cfg.train
        self.optimizer = torch.optim.AdamW(self.algo.param_groups(self.policy, self.params, t.lr), lr=t.lr,
                                           betas=tuple(t.betas), weight_decay=t.weight_decay, eps=t.adam_eps)
        self.updates_total = max(1, t.steps * t.updates_per_step * t.inner_epochs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)
        from genrl.distributed import ZeroOptimizerState, init_deepspeed

        # DeepSpeed launch config: ZeRO-1/2 engine owns gradient reduction, clipping and the optimizer step
        self.engine = init_deepspeed(self.policy, self.optimizer, self.acc, t.max_grad_norm)
        self.optimizer_state = ZeroOptimizerState(self.engine) if self.engine is not None else self.optimizer
        self.ema = EMA(self.policy.trainable_state(), cfg.ema.decay, cfg.ema.every, cfg.ema.cadence) \
            if cfg.ema.enabled else None
        # fp16 autocast needs loss scaling (the reference's accelerate backward does the same); no-op otherwise
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.run.mixed_precision == "fp16")
        self.scaler_skips = 0

        # ---- state ----
        self.step = 0
        self.update = 0
        self.samples_seen = 0
        self.wall_offset = self.cpu_offset = 0.0
        self.t0, self.c0 = time.time(), time.process_time()  # run() restarts the clocks; benchmarks step by hand
        self.skipped_updates = 0
        self.nonfinite_in_row = 0
        self.idle_in_row = 0
        self.first_eval: dict | None = None
        self.last_eval: dict | None = None
        if resume and not os.path.isfile(os.path.join(run_dir, "config.yaml")):
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml); nothing to resume")
        ckpt = None
        if resume:
            ckpt, notes = find_resumable(run_dir)
            if self.main:
                for d in clean_interrupted(run_dir):
                    self.log_fn(f"genrl: removed {d} (left by an interrupted checkpoint write)")
                for note in notes:
                    self.log_fn(f"genrl: {note}")
                if ckpt is None:
                    self.log_fn(f"genrl: {run_dir} has no intact checkpoint; starting from step 0 (its metrics are "
                                "replaced)")
        if ckpt is not None:
            self._restore(ckpt)
        self.algo.setup(self.policy, self._ctx(self.step))
        self.acc.wait_for_everyone()  # every rank has checked run.dir before the main process writes into it
        if self.main:
            os.makedirs(os.path.join(run_dir, "samples"), exist_ok=True)
            save_config(cfg, os.path.join(run_dir, "config.yaml"))
        # on resume, drop metrics logged after the checkpoint (all of them if there is no checkpoint yet)
        self.logger = MetricsLogger(run_dir, self.main, cfg.run.tensorboard,
                                    resume_step=(self.step if ckpt is not None else -1) if resume else None)
        if resume and self.main:
            rows = read_metrics(self.logger.path)
            evals = [r for r in rows if "eval/reward_mean" in r]
            if evals:
                self.first_eval = evals[0]
        self.acc.wait_for_everyone()

    # ------------------------------------------------------------------------------------------------------
    def _lr_lambda(self, u: int) -> float:
        t = self.cfg.train
        if t.lr_warmup_steps > 0 and u < t.lr_warmup_steps:
            return (u + 1) / t.lr_warmup_steps
        if t.lr_schedule == "cosine":
            prog = min(1.0, (u - t.lr_warmup_steps) / max(1, self.updates_total - t.lr_warmup_steps))
            return 0.5 * (1 + math.cos(math.pi * prog))
        return 1.0

    def _ctx(self, step: int, salt: int = 0) -> StepContext:
        seed = _mix(self.cfg.run.seed, step, self.rank, salt)
        return StepContext(
            step=step, update=self.update, generator=torch.Generator().manual_seed(seed), rng=random.Random(seed),
            device=self.device, num_processes=self.world, process_index=self.rank, autocast=self.acc.autocast,
            seed=self.cfg.run.seed, epochs=self.cfg.train.inner_epochs, inference_mode=self.inference_mode,
        )

    def _rollout_ctx(self, step: int, global_batch: int) -> StepContext:
        ctx = self._ctx(step)
        seed = _mix(self.cfg.run.seed, step, 0x5EED, global_batch)
        ctx.generator, ctx.rng = torch.Generator().manual_seed(seed), random.Random(seed)
        return ctx

    def _state(self) -> dict:
        return {
            "step": self.step, "update": self.update, "samples_seen": self.samples_seen,
            "wall_time": self._wall(), "cpu_time": self._cpu(), "skipped_updates": self.skipped_updates,
            "nonfinite_in_row": self.nonfinite_in_row, "idle_in_row": self.idle_in_row,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "scaler_skips": self.scaler_skips,
            "algorithm": self.algo.state_dict(), "rng": rng_state(), "threads": self.threads,
        }

    def _restore(self, path: str) -> None:
        st = load_checkpoint(path, policy=self.policy, ema=self.ema, optimizer=self.optimizer_state)
        self.step, self.update, self.samples_seen = int(st["step"]), int(st["update"]), int(st["samples_seen"])
        self.wall_offset, self.cpu_offset = float(st["wall_time"]), float(st.get("cpu_time", 0.0))
        self.skipped_updates, self.nonfinite_in_row = int(st["skipped_updates"]), int(st["nonfinite_in_row"])
        self.idle_in_row = int(st.get("idle_in_row", 0))
        self.scheduler.load_state_dict(st["scheduler"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.scaler_skips = int(st.get("scaler_skips", 0))
        self.algo.load_state_dict(st["algorithm"])
        set_rng_state(st["rng"])
        self.log_fn(f"genrl: resumed from {path} (step {self.step})") if self.main else None
        # CPU kernels may split reductions by thread count, so the count is part of the run's numerics: an auto
        # run continues with the count it started with, whatever the cores are doing now
        was = int(st.get("threads", 0))
        if was and was != self.threads:
            if self.cfg.run.threads:
                self.log_fn(f"genrl: run.threads={self.threads}, but this run was trained with {was} thread(s); "
                            "results may differ from an uninterrupted run in the last digits") if self.main else None
            else:
                self.threads = was
                torch.set_num_threads(was)
                self.log_fn(f"genrl: {was} torch thread(s), as before the checkpoint (exact resume)") \
                    if self.main else None

    # ------------------------------------------------------------------------------------------------------
    def rollout_step(self, step: int, round_: int = 0) -> tuple[Batch, dict]:
        """Rollouts + rewards for this rank's share of `step`'s groups (of rollout round `round_`: dynamic
        sampling's extra rounds draw new prompts and noise)."""
        cfg = self.cfg
        idx, groups = self.sampler.indices(step, round_)
        self.policy.eval()
        batches, details = [], {}
        bs = cfg.sample.batch_size
        for i in range(0, len(idx), bs):
            # randomness per GLOBAL rollout batch (not per rank): N processes sample exactly what 1 process would
            ctx = self._rollout_ctx(step, (self.rank * self.per_rank + i) // bs + round_ * 1_000_003)
            sl = idx[i : i + bs]
            prompts = [self.train_prompts.prompts[j] for j in sl]
            b = self.algo.rollout(self.policy, prompts, groups[i : i + bs], ctx)
            if self.train_prompts.metadata is not None:
                b.metadata = [self.train_prompts.metadata[j] for j in sl]
            if b.get("rewards") is None:
                out, bad = self._score(reward_input(b), b.prompts, b.get("metadata"))
                # [B], or [B, S] with hierarchical stages (each stage's own advantages; genrl/hierarchy.py)
                b.rewards = (self.reward_fn.stage_scores(out) if cfg.advantage.stages else out.scores).float().cpu()
                b.rewards[bad] = float("nan")  # non-finite samples are never scored: their groups are dropped
                details.setdefault("nonfinite_samples", []).append(bad.float())
                for k, v in per_sample(out.details, len(b)).items():
                    details.setdefault(k, []).append(v)
            else:  # a rollout that scores itself may report per-sample details (e.g. episode success, length)
                for k, v in per_sample(b.get("details") or {}, len(b)).items():
                    details.setdefault(k, []).append(v)
            b.images = b.outputs = b.details = None  # not needed by the update; frees memory
            batches.append(b)
        batch = Batch.cat(batches)
        batch.rewards = batch.rewards.cpu().float()
        return batch, {k: torch.cat(v) for k, v in details.items()}

    def dynamic_rollout(self, step: int) -> tuple[Batch, dict, int]:
        """`rollout_step`, then (advantage.dynamic_sampling > 0, DAPO) more rounds of groups_per_step new groups
        until groups_per_step groups over all ranks have finite rewards with std > 0, or the rounds run out.
        Returns (the rounds' concatenated batch, details, rounds done)."""
        batch, details = self.rollout_step(step)
        m, rounds = self.cfg.sample.groups_per_step, 1
        while rounds <= self.cfg.advantage.dynamic_sampling and self._informative_groups(batch).numel() < m:
            more, extra = self.rollout_step(step, rounds)
            batch = Batch.cat([batch, more])
            details = {k: torch.cat([v, extra[k]]) for k, v in details.items() if k in extra}
            rounds += 1
        return batch, details, rounds

    def _informative_groups(self, batch: Batch) -> torch.Tensor:
        """Sorted ids of the groups (over all ranks) whose rewards are finite and not all equal."""
        g_all = self._gather(batch.group)
        good, zero = group_masks(self._gather(batch.rewards), g_all)
        return torch.unique(g_all[good & ~zero])

    def _score(self, outputs, prompts: list[str], metadata):
        """The reward of `outputs`, with samples holding NaN/inf (a diverged model) masked out: they are scored as
        zeros and returned in `bad` [B] so the caller marks their rewards non-finite."""
        bad = torch.zeros(len(prompts), dtype=torch.bool)
        if isinstance(outputs, torch.Tensor) and outputs.is_floating_point():
            bad = ~torch.isfinite(outputs.detach()).flatten(1).all(1).cpu()
            if bad.any():
                outputs = torch.where(bad.reshape(-1, *[1] * (outputs.ndim - 1)).to(outputs.device),
                                      torch.zeros_like(outputs), outputs)
        return self.reward_fn(outputs, prompts, metadata), bad

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        return self.acc.gather(t.to(self.device)).cpu()

    def compute_advantages(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict]:
        """Gathered rewards -> advantages and the selection of this rank's samples to train on (equal count on
        every rank; zero-std / dropped samples re-added with advantage 0 only to fill micro-batches)."""
        cfg = self.cfg
        r_all, g_all = self._gather(batch.rewards), self._gather(batch.group)
        good, zero = group_masks(r_all, g_all)
        bad = ~good
        n_bad_groups = int(torch.unique(g_all[bad]).numel())
        if not good.any():
            n_bad = int((~torch.isfinite(r_all)).sum())
            raise TrainingAborted(
                f"step {step}: every group had a non-finite reward ({n_bad} of {len(r_all)} samples, {n_bad_groups} "
                f"groups): the model's outputs hold NaN/inf (lower train.lr) or the reward failed "
                f"({', '.join(cfg.rewards)})"
            )
        adv_all = torch.zeros_like(r_all)
        adv_all[good] = self.algo.advantages(r_all[good], g_all[good]).float()
        if cfg.advantage.negative_weight != 1.0:
            adv_all = torch.where(adv_all < 0, adv_all * cfg.advantage.negative_weight, adv_all)
        keep = good & ~zero if cfg.advantage.filter_zero_std else good.clone()
        if cfg.advantage.dynamic_sampling:  # train on groups_per_step informative groups, the earliest rounds first
            keep &= ~torch.isin(g_all, torch.unique(g_all[keep])[cfg.sample.groups_per_step:])
        stats = {
            "train/reward_mean": r_all[good].mean().item(),
            "train/reward_std": r_all[good].std(unbiased=False).item(),
            "train/zero_std_ratio": zero[good].float().mean().item(),
            "train/nonfinite_groups": n_bad_groups,
            "train/adv_abs_mean": adv_all[keep].abs().mean().item() if keep.any() else 0.0,
        }
        # this rank's slice; pad every rank to the same multiple of train.batch_size
        n_local = len(batch.rewards)  # per_rank x rollout rounds
        counts = keep.reshape(self.world, n_local).sum(1)
        bs = cfg.train.batch_size
        target = int(math.ceil(int(counts.max()) / bs) * bs)
        sl = slice(self.rank * n_local, (self.rank + 1) * n_local)
        keep_l, zero_l, adv_l = keep[sl], zero[sl], adv_all[sl]
        gen = torch.Generator().manual_seed(_mix(cfg.run.seed, step, self.rank, 77))
        chosen = torch.nonzero(keep_l).reshape(-1).tolist()
        fill = torch.nonzero(~keep_l).reshape(-1)
        fill = fill[torch.randperm(len(fill), generator=gen)]
        # prefer zero-std samples (finite rewards) as fillers, as the reference re-adds dropped samples
        fill = sorted(fill.tolist(), key=lambda i: 0 if bool(zero_l[i]) else 1)
        chosen += fill[: target - len(chosen)]
        adv_l = adv_l.clone()
        adv_l[~keep_l] = 0.0
        stats["train/trained_fraction"] = keep.float().mean().item()
        return torch.tensor(sorted(chosen), dtype=torch.long), {"adv": adv_l, **stats}

    def _allreduce_grads(self, flag: float) -> float:
        """Average the trainable gradients over ranks (DeepSpeed reduces them itself: only the flag then)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        if self.engine is not None:
            t = torch.tensor([flag], device=self.device)
            dist.all_reduce(t)
            return float(t) / self.world

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor([flag], device=self.device)])
        dist.all_reduce(flat)
        flat /= self.world
        off = 0
        for p, g in zip(self.params, grads):
            n = g.numel()
            p.grad = flat[off : off + n].view_as(p).clone()
            off += n
        return float(flat[-1])

    def _deepspeed_step(self, bad: float) -> torch.Tensor:
        """Clip + optimizer step inside the DeepSpeed engine; returns the pre-clip global gradient norm. The engine
        itself skips a step with a non-finite gradient norm (and clears the gradients); a non-finite LOSS on any
        rank (`bad`) is turned into that same skip: one extra backward adds a NaN gradient on every rank."""
        if bad > 0:
            poison = torch.stack([p.reshape(-1)[0] for p in self.params]).sum() * float("nan")
            self.engine.backward(poison, scale_wrt_gas=False)
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return torch.tensor(float("nan") if norm is None else float(norm))

    def train_step(self, batch: Batch, chosen: torch.Tensor, step: int) -> dict:
        cfg = self.cfg
        sums: dict[str, float] = {}
        count = 0
        if len(chosen) == 0:
            return {"train/updates": 0}
        self.policy.train()
        bs = cfg.train.batch_size
        n_updates_done = 0
        grad_norms = []
        for epoch in range(cfg.train.inner_epochs):
            gen = torch.Generator().manual_seed(_mix(cfg.run.seed, step, self.rank, 1000 + epoch))
            order = chosen[torch.randperm(len(chosen), generator=gen)]
            mbs = [order[i : i + bs] for i in range(0, len(order), bs)]
            n_up = min(cfg.train.updates_per_step, len(mbs))
            per = math.ceil(len(mbs) / n_up)
            chunks = [mbs[i : i + per] for i in range(0, len(mbs), per)]
            for chunk in chunks:
                ctx = self._ctx(step, salt=1 + self.update)
                ctx.epoch = epoch
                self.optimizer.zero_grad(set_to_none=True)
                bad = 0.0
                for k_mb, mb_idx in enumerate(chunk):
                    if k_mb > 0 and self.ema is not None:  # reference cadence: after each earlier micro-batch
                        self.ema.step(self.policy.trainable_state, self.update, micro_batch=True)
                    mb = batch.select(mb_idx)
                    for loss, metrics in self.algo.losses(self.policy, mb, ctx):
                        finite = bool(torch.isfinite(loss.detach()).all())
                        bad = bad if finite else 1.0
                        if self.engine is not None:
                            # DeepSpeed reduces gradients inside backward: every rank runs every backward, a
                            # non-finite term too (this update is skipped below anyway)
                            self.engine.backward(loss / len(chunk), scale_wrt_gas=False)
                        elif finite:
                            self.scaler.scale(loss / len(chunk)).backward()
                        if not finite:
                            continue
                        for k, v in metrics.items():
                            sums[k] = sums.get(k, 0.0) + float(v)
                        count += 1
                bad = self._allreduce_grads(bad)
                if self.engine is not None:
                    norm = self._deepspeed_step(bad)
                else:
                    self.scaler.unscale_(self.optimizer)
                    norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.train.max_grad_norm)
                if bad == 0 and self.scaler.is_enabled() and not torch.isfinite(norm):
                    # fp16 overflow: the scaler skips this update and lowers its scale (not a fault)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler_skips += 1
                    continue
                if bad > 0 or not torch.isfinite(norm):
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.skipped_updates += 1
                    self.nonfinite_in_row += 1
                    if self.nonfinite_in_row >= cfg.run.max_nonfinite_in_row:
                        raise TrainingAborted(
                            f"step {step}: {self.nonfinite_in_row} updates in a row had a non-finite loss or "
                            "gradient; lower train.lr, check the reward scale, or use run.mixed_precision=no"
                        )
                    continue
                self.nonfinite_in_row = 0
                grad_norms.append(float(norm))
                if not bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all()):  # one sync
                    raise TrainingAborted(
                        f"step {step}: the trainable weights became non-finite after update {self.update + 1}; lower "
                        f"train.lr (now {self.scheduler.get_last_lr()[0]:g}); the last checkpoint is intact"
                    )
                if self.engine is None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                self.scheduler.step()
                self.update += 1
                n_updates_done += 1
                ctx.update = self.update
                if self.ema is not None:
                    self.ema.step(self.policy.trainable_state, self.update)
                    self.ema.step(self.policy.trainable_state, self.update, micro_batch=True)  # the last one
                self.algo.after_optimizer_step(self.policy, ctx)
        out = {f"train/{k}": v / max(count, 1) for k, v in sums.items()}
        out["train/updates"] = n_updates_done
        out["train/grad_norm"] = float(np.mean(grad_norms)) if grad_norms else float("nan")
        return out

    # ------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, step: int) -> dict:
        """Fixed prompts, fixed per-prompt noise, deterministic ODE, EMA weights: comparable across steps. Scores the
        held-out set (eval/...) and, with eval.train_prompts > 0, a fixed training subset (eval/train/...); the
        sample grid shows the held-out set."""
        import contextlib

        cfg, ev = self.cfg, self.cfg.eval
        self.policy.eval()
        raw = self.policy.trainable_state()
        swap = self.policy.use_trainable(self.ema.state_for(raw)) if (self.ema and ev.use_ema) else \
            contextlib.nullcontext()
        metrics = {"step": step}
        with swap:
            for prefix, ps in self.eval_sets:
                results, grid_imgs = self._score_prompts(ps, step, ev.grid_images if prefix == "eval/" else 0)
                if self.world > 1:
                    from accelerate.utils import gather_object

                    results = gather_object(results)
                rows = sorted(results, key=lambda r: r["idx"])
                for k in sorted({k for r in rows for k in r if k != "idx"}):
                    vals = [r[k] for r in rows if k in r and math.isfinite(r[k])]
                    if vals:
                        metrics[f"{prefix}reward_mean" if k == "reward" else f"{prefix}{k}"] = float(np.mean(vals))
                if self.main and grid_imgs:
                    stem = os.path.join(cfg.run.dir, "samples", f"step_{step:06d}")
                    title = f"step {step}: eval reward {metrics.get('eval/reward_mean', 0):.3f}"
                    path = self.policy.save_samples([g[0] for g in grid_imgs], [g[1] for g in grid_imgs], stem,
                                                    [g[2] for g in grid_imgs], title=title)
                    metrics["eval/grid"] = os.path.relpath(path, cfg.run.dir)
        return metrics

    def _score_prompts(self, ps: PromptSet, step: int, grid_images: int) -> tuple[list[dict], list[tuple]]:
        """This rank's share of `ps` generated deterministically by `algo.eval_outputs` (fixed per-prompt seeds) and
        scored: one row per prompt ({"idx", "reward", reward details}) and up to `grid_images` (output, prompt,
        score) for the sample grid."""
        ev = self.cfg.eval
        mine = list(range(self.rank, len(ps), self.world))
        ctx = self._ctx(step)
        results, grid_items = [], []
        n_grid = min(grid_images, len(mine))  # grid: evenly spaced over this rank's prompts (every category)
        grid_ids = {mine[int(i * len(mine) / n_grid)] for i in range(n_grid)} if n_grid > 0 else set()
        for i in range(0, len(mine), ev.batch_size):
            ids = mine[i : i + ev.batch_size]
            prompts = [ps.prompts[j] for j in ids]
            meta = [ps.metadata[j] for j in ids] if ps.metadata is not None else self.policy.metadata_for(prompts)
            b = self.algo.eval_outputs(self.policy, prompts, [_mix(ev.seed, j) for j in ids], meta, ev, ctx)
            if b.get("metadata") is not None:  # the algorithm's own per-output metadata (e.g. CTRL's labels)
                meta = b.metadata
            outputs = reward_input(b)
            if b.get("rewards") is not None:
                scores, details = b.rewards.float().cpu(), b.get("details") or {}
            else:
                out, bad = self._score(outputs, prompts, meta)
                scores, details = out.scores.float().clone(), out.details
                scores[bad] = float("nan")
            details = per_sample(details, len(ids))
            for k, j in enumerate(ids):
                row = {"idx": j, "reward": float(scores[k])}
                for name, v in details.items():
                    row[name] = float(v[k])
                results.append(row)
                if j in grid_ids:
                    grid_items.append((outputs[k], prompts[k], float(scores[k])))
        return results, grid_items

    def _wall(self) -> float:
        return self.wall_offset + (time.time() - self.t0)

    def _cpu(self) -> float:
        """CPU seconds of this process (all its threads) since the run began, across resumes: the budget that
        "within N CPU-minutes" targets count (wall-clock is inflated on a shared machine)."""
        return self.cpu_offset + (time.process_time() - self.c0)

    def _cpu_budget_spent(self) -> bool:
        """train.cpu_minutes reached (the most any process used: every rank stops at the same step)."""
        budget = self.cfg.train.cpu_minutes
        return budget > 0 and self._gather(torch.tensor([self._cpu()])).max().item() >= budget * 60

    def checkpoint(self) -> None:
        opt_state = self.optimizer_state.state_dict()  # collective under DeepSpeed (gathers ZeRO partitions)
        if self.main:
            try:
                save_checkpoint(self.cfg.run.dir, self.step, policy=self.policy, ema=self.ema,
                                optimizer_state=opt_state, state=self._state(), keep_last=self.cfg.checkpoint.keep_last)
            except OSError as e:
                import errno

                kept = latest_checkpoint(self.cfg.run.dir)
                what = ("no space left on device" if e.errno == errno.ENOSPC
                        else f"{type(e).__name__}: {e.strerror or e}")
                raise TrainingAborted(
                    f"step {self.step}: writing the checkpoint failed ({what}); "
                    + (f"the last good checkpoint {kept} is intact: free space and resume with `genrl train --resume "
                       f"{self.cfg.run.dir}`" if kept else "no earlier checkpoint exists")
                ) from None
        self.acc.wait_for_everyone()

    def _check_idle(self, step: int, train_metrics: dict, info: dict, bar) -> None:
        """A step with nothing to learn from (no update, or, for a method that learns from advantages, every
        advantage 0: all groups zero-std) is counted; run.max_idle_steps of them in a row abort (a collapsed or
        saturated run should not report success)."""
        no_signal = self.algo.learns_from_advantages and info.get("train/adv_abs_mean", 0.0) == 0.0
        idle = train_metrics.get("train/updates", 0) == 0 or no_signal
        self.idle_in_row = self.idle_in_row + 1 if idle else 0
        info["train/idle_steps_in_row"] = self.idle_in_row
        if idle and self.main:
            msg = (f"genrl: step {step + 1} had nothing to learn from (zero-std ratio "
                   f"{info.get('train/zero_std_ratio', float('nan')):.2f}, {train_metrics.get('train/updates', 0)} "
                   f"updates); {self.idle_in_row} in a row")
            (bar.write if bar is not None else self.log_fn)(msg)
        limit = self.cfg.run.max_idle_steps
        if limit > 0 and self.idle_in_row >= limit:
            raise TrainingAborted(
                f"step {step + 1}: {self.idle_in_row} steps in a row had nothing to learn from (every group's rewards "
                "were equal, or no update was made): the model collapsed or the reward saturated; check the samples, "
                "lower train.lr, or raise run.max_idle_steps"
            )

    def run(self) -> RunResult:
        cfg = self.cfg
        self.t0, self.c0 = time.time(), time.process_time()
        total = cfg.train.steps
        ev_every, ck_every = cfg.eval.every, cfg.checkpoint.every
        if ev_every > 0 and self.step == 0:
            m = self.evaluate(0)
            m["wall_time"], m["cpu_time"] = self._wall(), self._cpu()
            self.first_eval = self.last_eval = m
            self.logger.log(m)
        bar = None
        if self.main and self.progress and total > self.step:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc="genrl train", unit="step", dynamic_ncols=True)
        while self.step < total:
            step = self.step
            t_start = time.time()
            batch, details, rounds = self.dynamic_rollout(step)
            t_roll = time.time() - t_start
            chosen, info = self.compute_advantages(batch, step)
            batch.advantages = info.pop("adv")
            info.update(self.algo.prepare_update(batch, self._gather))
            t1 = time.time()
            train_metrics = self.train_step(batch, chosen, step)
            self.algo.after_step(self.policy, self._ctx(step, salt=999))
            t_train = time.time() - t1
            self.step = step + 1
            self.samples_seen += cfg.sample.group_size * cfg.sample.groups_per_step * rounds
            if cfg.advantage.dynamic_sampling:
                info["train/rollout_rounds"] = rounds
            self._check_idle(step, train_metrics, info, bar)
            rec = {"step": self.step, "wall_time": self._wall(), "cpu_time": self._cpu(),
                   "samples_seen": self.samples_seen, **info,
                   **train_metrics, "train/lr": self.scheduler.get_last_lr()[0],
                   "train/skipped_updates": self.skipped_updates, "train/scaler_skips": self.scaler_skips,
                   "time/rollout_s": t_roll,
                   "time/train_s": t_train, "time/step_s": time.time() - t_start}
            for k, v in details.items():
                rec[f"train/reward_{k}"] = self._gather(v).nanmean().item() if v.numel() else None  # NaN: unscored
            last = self.step == total or self._cpu_budget_spent()
            if self.step % cfg.run.log_every == 0 or last:
                self.logger.log(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{info['train/reward_mean']:.3f}",
                                zero_std=f"{info['train/zero_std_ratio']:.2f}")
            if ev_every > 0 and (self.step % ev_every == 0 or last):
                m = self.evaluate(self.step)
                m["wall_time"], m["cpu_time"] = self._wall(), self._cpu()
                self.last_eval = m
                self.logger.log(m)
                if self.main:
                    plot_curves(self.logger.path, os.path.join(cfg.run.dir, "curves.png"), cfg.run.dir)
                    if bar is not None:
                        bar.write(f"step {self.step}: eval reward {m.get('eval/reward_mean', float('nan')):.4f}")
            if (ck_every > 0 and self.step % ck_every == 0) or last:
                self.checkpoint()
            if last:
                break
        if bar is not None:
            bar.close()
        curves = None
        if self.main:
            curves = plot_curves(self.logger.path, os.path.join(cfg.run.dir, "curves.png"), cfg.run.dir)
            grids = [e.get("eval/grid", "") for e in (self.first_eval, self.last_eval) if e]
            if len(grids) == 2 and all(g.endswith(".png") for g in grids):
                before_after(os.path.join(cfg.run.dir, self.first_eval["eval/grid"]),
                             os.path.join(cfg.run.dir, self.last_eval["eval/grid"]),
                             os.path.join(cfg.run.dir, "samples", "before_after.png"))
        self.logger.close()
        return RunResult(cfg.run.dir, self.step, self.first_eval, self.last_eval,
                         os.path.join(cfg.run.dir, "samples"), curves)


def train(cfg: Config, resume: bool = False, progress: bool = True) -> RunResult:
    """Run (or, with resume=True, continue) the training described by `cfg`."""
    return Trainer(cfg, resume=resume, progress=progress).run()
