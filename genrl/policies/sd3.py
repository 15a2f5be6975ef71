"""SD3 / SD3.5 adapter: a diffusers `StableDiffusion3Pipeline` (local dir or hub id) as a FlowPolicy.

Time convention: genrl's sigma t in [0, 1] (t = 1 noise, x_t = (1 - t) x0 + t eps, v = eps - x0) is what the SD3
transformer predicts for `timestep = 1000 * t`. Latents are the VAE's, normalised as the pipeline does:
z = (vae_latent - shift_factor) * scaling_factor.

    policy = SD3Policy.from_pretrained("stabilityai/stable-diffusion-3.5-medium", lora_rank=32)
    cond, uncond = policy.encode(prompts), policy.encode([""] * len(prompts))    # CFG negative = ""
    v = samplers.cfg(policy.velocity(x, t, uncond), policy.velocity(x, t, cond), 4.5)
    images = policy.decode(x0)                                                   # [B, 3, H, W] in [0, 1]

Text encoders: CLIP-L + CLIP-G, and T5-XXL unless `use_t5=False` (or the pipeline has none): then the T5 part
of the context is zeros, exactly as diffusers does. Prompts are padded to `max_sequence_length` = 128 T5 tokens
(reference). Embeddings are cached per unique prompt (CPU, LRU). Only the transformer is a registered submodule
(what DDP/FSDP wrap and what `parameters()` lists); text encoders and VAE are frozen, kept beside it, and follow
`.to(device)`. The reference recipe keeps the VAE and transformer base in fp32 (autocast does the rest) and the
text encoders in fp16; the defaults here do the same on CUDA and keep fp32 on CPU.
"""

from __future__ import annotations

import contextlib
import warnings

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

PIPELINE_CLASS = "StableDiffusion3Pipeline"
OPTIONS = {"lora_rank", "lora_alpha", "lora_targets", "lora_init", "gradient_checkpointing", "dtype",
           "text_encoder_dtype", "vae_dtype", "max_sequence_length", "use_t5", "device", "local_files_only",
           "revision", "cache_size", "offload_text_encoders"}


class SD3Policy(FlowPolicy):
    pipeline_class = PIPELINE_CLASS

    def __init__(self, pipe, lora_rank: int = 32, lora_alpha: float | None = None, lora_targets=None,
                 lora_init="gaussian", gradient_checkpointing: bool = False, max_sequence_length: int = 128,
                 cache_size: int = 4096, offload_text_encoders: bool = False):
        super().__init__()
        self.transformer = pipe.transformer
        # frozen parts live outside the module tree (not wrapped by DDP/FSDP, not in parameters())
        self._frozen = {"text_encoder": pipe.text_encoder, "text_encoder_2": pipe.text_encoder_2,
                        "text_encoder_3": pipe.text_encoder_3, "vae": pipe.vae}
        for m in self._frozen.values():
            if m is not None:
                m.requires_grad_(False).eval()
        self._pipe = pipe  # tokenizers + the pipeline's own encode_prompt (exact parity with diffusers)
        self.scheduler_config = dict(pipe.scheduler.config)
        self.vae_scale_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.max_sequence_length = max_sequence_length
        self.full_finetune = lora_rank == 0
        # full fine-tuning keeps a frozen copy as the reference model (beside, not inside, the module tree)
        self._frozen["reference"] = setup_trainable(self.transformer, lora_rank, lora_alpha,
                                                    list(lora_targets or lora_lib.SD3_TARGETS), lora_init,
                                                    gradient_checkpointing)
        self._active = {"active": self.transformer}
        self._cache = PromptCache(cache_size)
        self.offload_text_encoders = offload_text_encoders

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str, **options) -> SD3Policy:
        """Options: lora_rank (32; 0 = full fine-tuning), lora_alpha (None = 2*rank), lora_targets (reference
        attention projections), lora_init ("gaussian"), gradient_checkpointing, dtype (transformer base, "fp32"),
        text_encoder_dtype ("fp16" on CUDA, "fp32" on CPU), vae_dtype ("fp32"), max_sequence_length (128),
        use_t5 (True), offload_text_encoders (False: keep them on the GPU; True: on the CPU, visiting the GPU
        only to encode prompts not in the cache), device, local_files_only, revision, cache_size."""
        from diffusers import StableDiffusion3Pipeline

        check_options(options, OPTIONS, "SD3")
        device = torch.device(options.pop("device", None) or default_device())
        extra = {}
        if not options.pop("use_t5", True):
            extra.update(text_encoder_3=None, tokenizer_3=None)
        if options.get("revision"):
            extra["revision"] = options.pop("revision")
        text_dtype = parse_dtype(options.pop("text_encoder_dtype", "fp16" if device.type == "cuda" else "fp32"),
                                 "text_encoder_dtype")
        dtypes = {"default": torch.float32, "transformer": parse_dtype(options.pop("dtype", "fp32"), "dtype"),
                  "vae": parse_dtype(options.pop("vae_dtype", "fp32"), "vae_dtype"), "text_encoder": text_dtype,
                  "text_encoder_2": text_dtype, "text_encoder_3": text_dtype}
        kwargs = pipeline_kwargs(path, PIPELINE_CLASS, options.pop("local_files_only", False), **extra)
        pipe = StableDiffusion3Pipeline.from_pretrained(path, dtype=dtypes, **kwargs)
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
            emb, _, pooled, _ = self._pipe.encode_prompt(
                prompt=prompts, prompt_2=None, prompt_3=None, device=dev,
                num_images_per_prompt=1, do_classifier_free_guidance=False,
                max_sequence_length=self.max_sequence_length,
            )
        return emb, pooled

    def encode(self, prompts: list[str]) -> Cond:
        """{"prompt_embeds": [B, 77 + T5 len, joint_dim], "pooled_prompt_embeds": [B, 2048]} on the model device
        (cached per unique prompt). The CFG negative is encode([""] * B)."""
        emb, pooled = self._cache.get_many(list(prompts), self._encode_new)
        return {"prompt_embeds": emb.to(self.device), "pooled_prompt_embeds": pooled.to(self.device)}

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        return self.velocity(x, sigma, cond)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        """v(x, t) in fp32 for latents x [B, C, h, w] at sigma t (0-d or [B]); the transformer sees 1000 * t."""
        model = self._active["active"]
        dtype = module_dtype(model)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
        timestep = (sigma * 1000).expand(x.shape[0]) if sigma.ndim == 0 else sigma * 1000
        with condition_scope(self.transformer, cond, x.shape[0]):  # CTRL labels: cond["condition"]
            out = model(
                hidden_states=x.to(dtype), timestep=timestep, encoder_hidden_states=cond["prompt_embeds"].to(dtype),
                pooled_projections=cond["pooled_prompt_embeds"].to(dtype), return_dict=False,
            )[0]
        return out.float()

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        vae = self._frozen["vae"]
        z = x / vae.config.scaling_factor + vae.config.shift_factor
        with contextlib.nullcontext() if x.requires_grad else torch.no_grad():  # CTRL: reward backprop
            img = vae.decode(z.to(device=vae.device, dtype=vae.dtype), return_dict=False)[0]
        return (img.float() / 2 + 0.5).clamp(0, 1)

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> normalised latents (a VAE posterior sample), fp32."""
        vae = self._frozen["vae"]
        with torch.no_grad():
            dist = vae.encode((images * 2 - 1).to(device=vae.device, dtype=vae.dtype)).latent_dist
        z = dist.sample(generator)
        return ((z - vae.config.shift_factor) * vae.config.scaling_factor).float()

    def default_resolution(self) -> int:
        return int(self.transformer.config.sample_size) * self.vae_scale_factor

    def noise_shape(self, batch: int, resolution: int | None = None) -> tuple[int, ...]:
        res = resolution or self.default_resolution()
        patch = self.vae_scale_factor * self.transformer.config.patch_size
        if res % patch:
            raise ValueError(f"resolution {res} must be a multiple of {patch} for this SD3 model")
        s = res // self.vae_scale_factor
        return (batch, self.transformer.config.in_channels, s, s)

    def sigmas(self, num_steps: int, shift: float | None = None, resolution: int | None = None) -> torch.Tensor:
        """The pipeline scheduler's sigma grid (num_steps + 1 values, last 0) with a static shift: the scheduler's
        own (3.0 for SD3.5) when `shift` is None, else `shift` (= samplers.flow_sigmas(num_steps, shift))."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        config = dict(self.scheduler_config)
        if shift is not None:
            if float(shift) != float(config.get("shift", 1.0)) and not getattr(self, "_warned_shift", False):
                self._warned_shift = True
                warnings.warn(f"sigma grid with shift {shift} while this model's scheduler uses "
                              f"{config.get('shift')} (set sample.shift to match unless intended)", stacklevel=2)
            config["shift"] = float(shift)
        sched = FlowMatchEulerDiscreteScheduler.from_config(config)
        if sched.config.use_dynamic_shifting:  # SD3 checkpoints with resolution-dependent shift
            from samplers import flux_mu

            c = sched.config
            seq = (self.noise_shape(1, resolution)[-1] // self.transformer.config.patch_size) ** 2
            sched.set_timesteps(num_steps, mu=flux_mu(seq, c.base_image_seq_len, c.max_image_seq_len, c.base_shift,
                                                      c.max_shift))
        else:
            sched.set_timesteps(num_steps)
        return sched.sigmas.float().cpu()

    def shard_units(self) -> list[nn.Module]:
        """The transformer blocks: FSDP2 units when the frozen base is sharded (genrl.distributed)."""
        return list(self.transformer.transformer_blocks)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.transformer.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def disable_adapter(self):
        with adapter_disabled(self.transformer, self._frozen["reference"], self._active):
            yield

    def save_trainable(self, directory: str) -> None:
        """LoRA: diffusers format, `StableDiffusion3Pipeline.load_lora_weights(directory)` loads it unchanged."""
        save_trained(self.transformer, directory, PIPELINE_CLASS, self.full_finetune)

    def load_trainable(self, directory: str) -> None:
        load_trained(self.transformer, directory, self.full_finetune)
