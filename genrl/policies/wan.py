"""Wan adapter: a diffusers `WanPipeline` (Wan2.1 / Wan2.2 T2V; local dir or hub id) as a FlowPolicy over video.

Time convention: genrl's sigma t in [0, 1] (t = 1 noise, x_t = (1 - t) x0 + t eps, v = eps - x0) is what the Wan
transformer predicts for `timestep = 1000 * t` (flow matching, as the pipeline's flow schedulers). Samples x are
the transformer's own layout [B, C, F', H', W']:
  * latent pipelines (the released Wan models): the VAE's latents, normalised as WanPipeline does,
    x = (z - latents_mean) / latents_std; F' = (num_frames - 1) / 4 + 1, H' = height / 8;
  * pixel-space pipelines (`"genrl_pixel_space": true` in model_index.json, no VAE; the moving-shapes world's
    model): x is the clip itself in [-1, 1], C = 3.
`decode(x)` returns clips [B, F, 3, H, W] in [0, 1] (frames first, what video rewards take). A model saved with
`"prediction": "x0"` outputs the clean sample; velocity() returns the implied v = (x_t - x0_hat) / t.

    policy = WanPolicy.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", lora_rank=32, height=240, width=416,
                                       num_frames=33)
    v = policy.velocity(x, t, policy.encode(prompts))        # CFG negative: encode([""] * B)
    clips = policy.decode(x0)                                # [B, F, 3, H, W] in [0, 1]

Text: UMT5 through the pipeline's own `_get_t5_prompt_embeds` (prompt cleaning, padding to max_sequence_length with
the embeddings zeroed past each prompt's length: exact parity with diffusers), cached per unique prompt. Only the
transformer is a registered submodule; the text encoder and VAE are frozen beside it and follow `.to(device)`.
LoRA is saved in the diffusers format, so `WanPipeline.load_lora_weights(dir)` loads it unchanged. Wan2.2's second
(low-noise) transformer is not trained: load such pipelines with `transformer_2` absent.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from genrl import lora as lora_lib
from genrl.policies.base import Cond, FlowPolicy
from genrl.policies.condition import condition_scope
from genrl.policies.diffusers_common import (
    PromptCache,
    adapter_disabled,
    check_options,
    default_device,
    load_trained,
    module_dtype,
    move_frozen,
    parse_dtype,
    pipeline_kwargs,
    place_pipeline,
    save_trained,
    setup_trainable,
    text_encoders_on,
)

PIPELINE_CLASS = "WanPipeline"
OPTIONS = {"lora_rank", "lora_alpha", "lora_targets", "lora_init", "gradient_checkpointing", "dtype",
           "text_encoder_dtype", "vae_dtype", "max_sequence_length", "height", "width", "num_frames", "device",
           "local_files_only", "revision", "cache_size", "offload_text_encoders"}


class WanPolicy(FlowPolicy):
    pipeline_class = PIPELINE_CLASS
    sample_format = "video"

    def __init__(self, pipe, index: dict, lora_rank: int = 32, lora_alpha: float | None = None, lora_targets=None,
                 lora_init="gaussian", gradient_checkpointing: bool = False, max_sequence_length: int | None = None,
                 height: int | None = None, width: int | None = None, num_frames: int | None = None,
                 cache_size: int = 4096, offload_text_encoders: bool = False):
        super().__init__()
        self.transformer = pipe.transformer
        self.pixel_space = bool(index.get("genrl_pixel_space", False))
        if not self.pixel_space and pipe.vae is None:
            raise ValueError("this WanPipeline has no VAE; a pixel-space model needs \"genrl_pixel_space\": true in "
                             "its model_index.json")
        self.world = "motion" if self.pixel_space else None  # the embedded world whose prompts it was trained on
        self.prediction = index.get("prediction", "v")
        if self.prediction not in ("v", "x0"):
            raise ValueError(f"model_index.json prediction must be 'v' or 'x0', got {self.prediction!r}")
        self._frozen = {"text_encoder": pipe.text_encoder, "vae": pipe.vae}
        for m in self._frozen.values():
            if m is not None:
                m.requires_grad_(False).eval()
        self._pipe = pipe
        self.scheduler_config = dict(pipe.scheduler.config) if pipe.scheduler is not None else {}
        video = index.get("genrl_video", {})
        self.height = int(height or video.get("height", 480))
        self.width = int(width or video.get("width", 832))
        self.num_frames = int(num_frames or video.get("num_frames", 81))
        self.max_sequence_length = int(max_sequence_length or index.get("genrl_max_sequence_length", 512))
        self.scale_t, self.scale_s = (1, 1) if self.pixel_space else (pipe.vae_scale_factor_temporal,
                                                                      pipe.vae_scale_factor_spatial)
        self._check_geometry(self.height, self.width, self.num_frames)
        self.full_finetune = lora_rank == 0
        self._frozen["reference"] = setup_trainable(self.transformer, lora_rank, lora_alpha,
                                                    list(lora_targets or lora_lib.WAN_TARGETS), lora_init,
                                                    gradient_checkpointing)
        self._active = {"active": self.transformer}
        self._cache = PromptCache(cache_size)
        self.offload_text_encoders = offload_text_encoders

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str, **options) -> WanPolicy:
        """Options: lora_rank (32; 0 = full fine-tuning), lora_alpha (None = 2*rank), lora_targets (attention
        projections of self- and cross-attention), lora_init, gradient_checkpointing, dtype (transformer, "fp32"),
        text_encoder_dtype ("bf16" on CUDA, "fp32" on CPU), vae_dtype ("fp32"), max_sequence_length (512, or the
        model's own), height / width / num_frames (the clip generated; defaults from the model, else 480x832x81),
        offload_text_encoders, device, local_files_only, revision, cache_size."""
        from diffusers import WanPipeline

        check_options(options, OPTIONS, "Wan")
        device = torch.device(options.pop("device", None) or default_device())
        local = options.pop("local_files_only", False)
        from genrl.policies import read_model_index

        index = read_model_index(path, local)
        extra = {"transformer_2": None} if index.get("transformer_2", [None])[0] is not None else {}
        if options.get("revision"):
            extra["revision"] = options.pop("revision")
        text_dtype = parse_dtype(options.pop("text_encoder_dtype", "bf16" if device.type == "cuda" else "fp32"),
                                 "text_encoder_dtype")
        dtypes = {"default": torch.float32, "transformer": parse_dtype(options.pop("dtype", "fp32"), "dtype"),
                  "vae": parse_dtype(options.pop("vae_dtype", "fp32"), "vae_dtype"), "text_encoder": text_dtype}
        kwargs = pipeline_kwargs(path, PIPELINE_CLASS, local, **extra)
        from diffusers.utils import logging as diffusers_logging

        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # model_index.json's genrl_* keys are ours, not WanPipeline's
        try:
            pipe = WanPipeline.from_pretrained(path, dtype=dtypes, **kwargs)
        finally:
            diffusers_logging.set_verbosity(verbosity)
        place_pipeline(pipe, device, options.get("offload_text_encoders", False))
        pipe.set_progress_bar_config(disable=True)
        policy = cls(pipe, index, **options)
        policy.model_path = path
        return policy

    def _check_geometry(self, height: int, width: int, frames: int) -> None:
        pt, ph, pw = self.transformer.config.patch_size
        if ((frames - 1) // self.scale_t + 1) % pt:
            raise ValueError(f"num_frames {frames} gives {(frames - 1) // self.scale_t + 1} latent frames, not a "
                             f"multiple of the temporal patch {pt}")
        if height % (self.scale_s * ph) or width % (self.scale_s * pw):
            raise ValueError(f"height {height} and width {width} must be multiples of {self.scale_s * ph} for this Wan "
                             "model (VAE factor x patch size)")
        if (frames - 1) % self.scale_t:
            raise ValueError(f"num_frames {frames} must be 1 + a multiple of {self.scale_t} (the VAE's time factor)")

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        move_frozen(self._frozen, fn, skip_text_encoders=self.offload_text_encoders)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # ---------------------------------------------------------------- FlowPolicy
    def _encode_new(self, prompts: list[str]):
        with torch.no_grad(), text_encoders_on(self._frozen, self.device, self.offload_text_encoders) as dev:
            emb = self._pipe._get_t5_prompt_embeds(prompt=prompts, max_sequence_length=self.max_sequence_length,
                                                   device=dev)
        return (emb,)

    def encode(self, prompts: list[str]) -> Cond:
        """{"prompt_embeds": [B, max_sequence_length, text_dim]} on the model device (cached per unique prompt)."""
        if isinstance(prompts, str):
            raise ValueError("encode expects a list of prompts, not a single string")
        (emb,) = self._cache.get_many(list(prompts), self._encode_new)
        return {"prompt_embeds": emb.to(self.device)}

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        return self.velocity(x, sigma, cond)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        """v(x, t) in fp32 for x [B, C, F', H', W'] at sigma t (0-d or [B]); the transformer sees 1000 * t."""
        model = self._active["active"]
        dtype = module_dtype(model)
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        t = sigma.reshape(-1).expand(b) if sigma.numel() == 1 else sigma.reshape(b)
        emb = cond["prompt_embeds"]
        if emb.shape[0] == 1 and b > 1:
            emb = emb.expand(b, -1, -1)
        with condition_scope(self.transformer, cond, b):
            out = model(hidden_states=x.to(dtype), timestep=t * 1000, encoder_hidden_states=emb.to(dtype),
                        return_dict=False)[0].float()
        if self.prediction == "x0":
            out = (x.float() - out) / t.clamp(min=1e-6).view(-1, *([1] * (x.dim() - 1)))
        return out

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Clips [B, F, 3, H, W] in [0, 1]."""
        if self.pixel_space:
            video = x.float()
        else:
            vae = self._frozen["vae"]
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean, device=x.device).view(shape)
            std = torch.tensor(vae.config.latents_std, device=x.device).view(shape)
            z = x.float() * std + mean
            with contextlib.nullcontext() if x.requires_grad else torch.no_grad():
                video = vae.decode(z.to(device=vae.device, dtype=vae.dtype), return_dict=False)[0].float()
        return (video.permute(0, 2, 1, 3, 4) / 2 + 0.5).clamp(0, 1)

    def noise_shape(self, batch: int, resolution: int | None = None) -> tuple[int, ...]:
        """[B, C, F', H', W'] for the configured clip (`resolution` overrides height and width: a square clip)."""
        h = w = int(resolution) if resolution else None
        h, w = h or self.height, w or self.width
        self._check_geometry(h, w, self.num_frames)
        c = self.transformer.config.in_channels
        return (batch, c, (self.num_frames - 1) // self.scale_t + 1, h // self.scale_s, w // self.scale_s)

    def sigmas(self, num_steps: int, shift: float | None = None, resolution: int | None = None) -> torch.Tensor:
        """samplers.flow_sigmas(num_steps, shift); shift None = the pipeline scheduler's (UniPC `flow_shift`,
        FlowMatchEuler `shift`), else 1."""
        from samplers import flow_sigmas

        if shift is None:
            shift = self.scheduler_config.get("flow_shift", self.scheduler_config.get("shift", 1.0))
        return flow_sigmas(num_steps, float(shift))

    def shard_units(self) -> list[nn.Module]:
        return list(self.transformer.blocks)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.transformer.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def disable_adapter(self):
        with adapter_disabled(self.transformer, self._frozen["reference"], self._active):
            yield

    def save_trainable(self, directory: str) -> None:
        """LoRA: diffusers format, `WanPipeline.load_lora_weights(directory)` loads it unchanged."""
        save_trained(self.transformer, directory, PIPELINE_CLASS, self.full_finetune)

    def load_trainable(self, directory: str) -> None:
        load_trained(self.transformer, directory, self.full_finetune)

    def save_samples(self, outputs: list[torch.Tensor], captions: list[str], stem: str,
                     scores: list[float] | None = None, title: str | None = None) -> str:
        """An animated GIF grid (`stem`.gif) of the clips [F, 3, H, W]."""
        from genrl.logging_utils import save_video_grid

        return save_video_grid(torch.stack(outputs), captions, stem + ".gif", scores, title=title)

    def metadata_for(self, prompts: list[str]):
        """[{"spec": ...}] for prompts of the moving-shapes world's grammar; None if any prompt is outside it."""
        from rewards.motion.world import parse_prompt

        try:
            return [{"spec": parse_prompt(p)} for p in prompts]
        except ValueError:
            return None

