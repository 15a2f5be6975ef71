"""FLUX.1 adapter: a diffusers `FluxPipeline` (local dir or hub id) as a FlowPolicy.

Time convention: genrl's sigma t in [0, 1] (t = 1 noise, x_t = (1 - t) x0 + t eps, v = eps - x0). FluxPipeline
passes `timestep / 1000` = t to the transformer (which multiplies by 1000 inside), so velocity() passes t itself.

Latents are PACKED as the pipeline does: 2x2 patches of the VAE latent [B, C, h, w] become tokens,
x: [B, (h/2)(w/2), 4C] (noise_shape gives this shape; i.i.d. noise is the same in packed or unpacked form).
Image position ids come from the square latent grid, text ids are zeros. Guidance-distilled checkpoints
(FLUX.1-dev, `guidance_embeds=True`) get the distilled guidance `guidance_scale` (3.5) as the `guidance` input;
FLUX has no CFG in the reference recipe. The sigma grid uses dynamic shifting: mu from the image token count
(`sigmas()`, = samplers.flow_sigmas(n, mu=samplers.flux_mu(seq_len))).

    policy = FluxPolicy.from_pretrained("black-forest-labs/FLUX.1-dev", lora_rank=64, dtype="bf16")
    cond = policy.encode(prompts); v = policy.velocity(x, t, cond); images = policy.decode(x0)

Only the transformer is a registered submodule; the CLIP/T5 encoders and the VAE are frozen beside it and follow
`.to(device)`. Prompt embeddings are cached per unique prompt (CPU, LRU).
"""

from __future__ import annotations

import contextlib
import math

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

PIPELINE_CLASS = "FluxPipeline"
OPTIONS = {"lora_rank", "lora_alpha", "lora_targets", "lora_init", "gradient_checkpointing", "dtype",
           "text_encoder_dtype", "vae_dtype", "max_sequence_length", "guidance_scale", "device", "local_files_only",
           "revision", "cache_size", "offload_text_encoders"}


class FluxPolicy(FlowPolicy):
    pipeline_class = PIPELINE_CLASS

    def __init__(self, pipe, lora_rank: int = 64, lora_alpha: float | None = None, lora_targets=None,
                 lora_init="gaussian", gradient_checkpointing: bool = False, max_sequence_length: int = 512,
                 guidance_scale: float = 3.5, cache_size: int = 4096, offload_text_encoders: bool = False):
        super().__init__()
        self.transformer = pipe.transformer
        self._frozen = {"text_encoder": pipe.text_encoder, "text_encoder_2": pipe.text_encoder_2, "vae": pipe.vae}
        for m in self._frozen.values():
            if m is not None:
                m.requires_grad_(False).eval()
        self._pipe = pipe  # tokenizers + the pipeline's own encode_prompt / (un)packing helpers
        self.scheduler_config = dict(pipe.scheduler.config)
        self.vae_scale_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.latent_channels = self.transformer.config.in_channels // 4
        self.max_sequence_length = max_sequence_length
        self.guidance_scale = guidance_scale
        self.full_finetune = lora_rank == 0
        self._frozen["reference"] = setup_trainable(self.transformer, lora_rank, lora_alpha,
                                                    list(lora_targets or lora_lib.FLUX_TARGETS), lora_init,
                                                    gradient_checkpointing)
        self._active = {"active": self.transformer}
        self._cache = PromptCache(cache_size)
        self.offload_text_encoders = offload_text_encoders

    @classmethod
    def from_pretrained(cls, path: str, **options) -> FluxPolicy:
        """Options: lora_rank (64; 0 = full fine-tuning), lora_alpha (None = 2*rank), lora_targets (reference:
        attention projections + ff/ff_context), lora_init ("gaussian"), gradient_checkpointing, dtype (transformer,
        "bf16" on CUDA / "fp32" on CPU), text_encoder_dtype (same defaults), vae_dtype ("fp32"),
        max_sequence_length (512), guidance_scale (3.5), offload_text_encoders (False; True keeps CLIP/T5 on the
        CPU and moves them to the GPU only to encode uncached prompts), device, local_files_only, revision,
        cache_size."""
        from diffusers import FluxPipeline

        check_options(options, OPTIONS, "FLUX")
        device = torch.device(options.pop("device", None) or default_device())
        half = "bf16" if device.type == "cuda" else "fp32"
        text_dtype = parse_dtype(options.pop("text_encoder_dtype", half), "text_encoder_dtype")
        dtypes = {"default": torch.float32, "transformer": parse_dtype(options.pop("dtype", half), "dtype"),
                  "vae": parse_dtype(options.pop("vae_dtype", "fp32"), "vae_dtype"), "text_encoder": text_dtype,
                  "text_encoder_2": text_dtype}
        extra = {"revision": options.pop("revision")} if options.get("revision") else {}
        kwargs = pipeline_kwargs(path, PIPELINE_CLASS, options.pop("local_files_only", False), **extra)
        pipe = FluxPipeline.from_pretrained(path, dtype=dtypes, **kwargs)
        place_pipeline(pipe, device, options.get("offload_text_encoders", False))
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, **options)

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
            emb, pooled, _ = self._pipe.encode_prompt(
                prompt=prompts, prompt_2=None, device=dev, num_images_per_prompt=1,
                max_sequence_length=self.max_sequence_length,
            )
        return emb, pooled

    def encode(self, prompts: list[str]) -> Cond:
        """{"prompt_embeds": [B, max_sequence_length, 4096] (T5), "pooled_prompt_embeds": [B, 768] (CLIP)}."""
        emb, pooled = self._cache.get_many(list(prompts), self._encode_new)
        return {"prompt_embeds": emb.to(self.device), "pooled_prompt_embeds": pooled.to(self.device)}

    def _grid(self, seq_len: int) -> int:
        side = math.isqrt(seq_len)
        if side * side != seq_len:
            raise ValueError(f"packed FLUX latents with {seq_len} tokens are not a square grid; use square images")
        return side  # tokens per side = latent size / 2

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        return self.velocity(x, sigma, cond)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        """v(x, t) in fp32 for packed latents x [B, N, 4C] at sigma t (0-d or [B]); the transformer sees t."""
        model = self._active["active"]
        dtype = module_dtype(model)
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        timestep = sigma.expand(b) if sigma.ndim == 0 else sigma
        side = self._grid(x.shape[1])
        img_ids = self._pipe._prepare_latent_image_ids(b, side, side, x.device, dtype)
        emb = cond["prompt_embeds"].to(dtype)
        txt_ids = torch.zeros(emb.shape[1], 3, device=x.device, dtype=dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full([b], float(self.guidance_scale), device=x.device, dtype=torch.float32)
        with condition_scope(self.transformer, cond, b):  # CTRL labels: cond["condition"]
            out = model(
                hidden_states=x.to(dtype), timestep=timestep.to(dtype), guidance=guidance,
                pooled_projections=cond["pooled_prompt_embeds"].to(dtype), encoder_hidden_states=emb,
                txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
            )[0]
        return out.float()

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """Packed [B, N, 4C] -> VAE-latent layout [B, C, h, w]."""
        side = self._grid(x.shape[1]) * 2
        return self._pipe._unpack_latents(x, side * self.vae_scale_factor, side * self.vae_scale_factor,
                                          self.vae_scale_factor)

    def pack(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        return self._pipe._pack_latents(z, b, c, h, w)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        vae = self._frozen["vae"]
        z = self.unpack(x) / vae.config.scaling_factor + vae.config.shift_factor
        with contextlib.nullcontext() if x.requires_grad else torch.no_grad():  # CTRL: reward backprop
            img = vae.decode(z.to(device=vae.device, dtype=vae.dtype), return_dict=False)[0]
        return (img.float() / 2 + 0.5).clamp(0, 1)

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> packed normalised latents (a VAE posterior sample), fp32."""
        vae = self._frozen["vae"]
        with torch.no_grad():
            dist = vae.encode((images * 2 - 1).to(device=vae.device, dtype=vae.dtype)).latent_dist
        z = (dist.sample(generator) - vae.config.shift_factor) * vae.config.scaling_factor
        return self.pack(z.float())

    def default_resolution(self) -> int:
        return 128 * self.vae_scale_factor  # FluxPipeline.default_sample_size * vae_scale_factor (1024 for FLUX.1)

    def noise_shape(self, batch: int, resolution: int | None = None) -> tuple[int, ...]:
        res = resolution or self.default_resolution()
        if res % (2 * self.vae_scale_factor):
            raise ValueError(f"resolution {res} must be a multiple of {2 * self.vae_scale_factor} for FLUX")
        side = res // (2 * self.vae_scale_factor)
        return (batch, side * side, self.latent_channels * 4)

    def sigmas(self, num_steps: int, shift: float | None = None, resolution: int | None = None) -> torch.Tensor:
        """FluxPipeline's grid: linspace(1, 1/n, n) time-shifted with mu(image tokens), then a final 0. `shift` is
        ignored (dynamic shifting replaces it, as in diffusers)."""
        import numpy as np
        from diffusers import FlowMatchEulerDiscreteScheduler

        from samplers import flux_mu

        c = self.scheduler_config
        seq = self.noise_shape(1, resolution)[1]
        mu = flux_mu(seq, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                     c.get("base_shift", 0.5), c.get("max_shift", 1.15))
        sched = FlowMatchEulerDiscreteScheduler.from_config(c)
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), mu=mu)
        return sched.sigmas.float().cpu()

    def shard_units(self) -> list[nn.Module]:
        """The transformer blocks: FSDP2 units when the frozen base is sharded (genrl.distributed)."""
        return list(self.transformer.transformer_blocks) + list(self.transformer.single_transformer_blocks)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.transformer.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def disable_adapter(self):
        with adapter_disabled(self.transformer, self._frozen["reference"], self._active):
            yield

    def save_trainable(self, directory: str) -> None:
        """LoRA: diffusers format, `FluxPipeline.load_lora_weights(directory)` loads it unchanged."""
        save_trained(self.transformer, directory, PIPELINE_CLASS, self.full_finetune)

    def load_trainable(self, directory: str) -> None:
        load_trained(self.transformer, directory, self.full_finetune)
