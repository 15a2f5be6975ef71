"""Flow-matching robot policies (pi0-style action experts): observation -> action chunk [H, D] in K Euler steps.

Time convention (genrl's, also pi0's): t = 1 is pure noise, t = 0 is the action chunk; x_t = t eps + (1 - t) a,
velocity v = eps - a; training time t = 0.001 + 0.999 Beta(1.5, 1); loss = mean over (H, D) of ||v - u||^2.

Backbones (`backbone` in robot_policy.json):
  * "mlp": a small built-in action expert for state observations: [normalised obs, x_t (flat), sinusoidal(t)]
    -> SiLU MLP -> features [B, F] -> velocity [B, H * D]. Full fine-tuning.
  * "pi0": transformers.PI0ForConditionalGeneration (PaliGemma prefix over camera images + instruction tokens, Gemma
    action expert over [state, H noisy actions]); features = the expert's last hidden states of the H action
    tokens [B, H, F]. `pi0_path` is loaded with from_pretrained; LoRA (peft) on the action expert when
    lora_rank > 0, else the whole action expert (train_expert_only, as pi_RL) is trained; the VLM stays frozen.
Heads on the action-expert features (pi_RL): the Flow-Noise noise net (MLP 128 -> 64, tanh, -> D per action;
std bounded to [std_min, std_max] = [0.08, 0.16]) and the critic's value head (ReLU MLP; mean over action tokens;
last layer N(0, 0.02), zero bias), optionally fed detached features.

A policy directory holds model_index.json ({"_class_name": "RobotFlowPolicy"}), robot_policy.json (the
config, incl. observation normalisation), model.safetensors (all weights for "mlp"; only the trainable tensors
for "pi0", whose base stays at pi0_path) and a README.md model card.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from genrl.policies.base import FlowPolicy

CLASS_NAME = "RobotFlowPolicy"


@dataclass
class RobotPolicyConfig:
    env: str = "robot2d"  # environment id the policy acts in (genrl.worlds.envs)
    obs_dim: int = 6
    action_dim: int = 2  # env action dims (the first action_dim of the model's action vector)
    horizon: int = 8  # H: actions predicted per call
    action_chunk: int = 4  # actions executed per call (<= horizon)
    steps: int = 4  # K denoising steps
    backbone: str = "mlp"  # mlp | pi0
    hidden: int = 256
    layers: int = 3
    time_dim: int = 64
    value_hidden: list[int] = field(default_factory=lambda: [256, 128])
    noise_hidden: list[int] = field(default_factory=lambda: [128, 64])
    std_min: float = 0.08
    std_max: float = 0.16
    detach_critic: bool = True
    obs_mean: list[float] | None = None
    obs_std: list[float] | None = None
    pi0_path: str | None = None  # pi0 backbone: a PI0ForConditionalGeneration directory or hub id
    instruction_ids: list[int] = field(default_factory=list)  # pi0: instruction token ids (after the image tokens)
    image_size: int = 224  # pi0: camera frames are resized to this square size


def sinusoidal(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """pi0's sinusoidal time embedding of t [B] -> [B, dim]."""
    frac = torch.linspace(0.0, 1.0, dim // 2, device=t.device)
    freq = 2 * math.pi / (min_period * (max_period / min_period) ** frac)
    e = t.float()[:, None] * freq[None]
    return torch.cat([e.sin(), e.cos()], 1)


def _mlp(sizes: list[int], act: type[nn.Module]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(act())
    return nn.Sequential(*mods)


class MLPActionExpert(nn.Module):
    def __init__(self, c: RobotPolicyConfig):
        super().__init__()
        self.c = c
        d_in = c.obs_dim + c.horizon * c.action_dim + c.time_dim
        self.trunk = _mlp([d_in] + [c.hidden] * c.layers, nn.SiLU)
        self.act = nn.SiLU()
        self.out = nn.Linear(c.hidden, c.horizon * c.action_dim)
        self.feature_dim, self.model_action_dim = c.hidden, c.action_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        h = self.act(self.trunk(torch.cat([cond["obs"], x.reshape(b, -1), sinusoidal(t, self.c.time_dim)], 1)))
        return self.out(h).reshape(x.shape), h[:, None, :]


class PI0ActionExpert(nn.Module):
    """transformers' PI0ForConditionalGeneration as velocity + features (the prefix is re-encoded per call)."""

    def __init__(self, c: RobotPolicyConfig, lora_rank: int = 0, lora_alpha: float | None = None):
        super().__init__()
        from transformers import PI0ForConditionalGeneration

        if not c.pi0_path:
            raise ValueError("backbone 'pi0' needs pi0_path (a PI0ForConditionalGeneration directory or hub id)")
        self.c = c
        self.model = PI0ForConditionalGeneration.from_pretrained(c.pi0_path)
        mc = self.model.config
        if mc.chunk_size != c.horizon:
            raise ValueError(f"pi0 chunk_size {mc.chunk_size} != horizon {c.horizon}; set horizon={mc.chunk_size}")
        if c.obs_dim > mc.max_state_dim or c.action_dim > mc.max_action_dim:
            raise ValueError(f"env obs/action dims ({c.obs_dim}, {c.action_dim}) exceed pi0's max_state_dim/"
                             f"max_action_dim ({mc.max_state_dim}, {mc.max_action_dim})")
        self.model.requires_grad_(False)
        expert = [self.model.model.dit, self.model.embed_action_time, self.model.action_out_proj]
        if lora_rank > 0:
            from peft import LoraConfig, inject_adapter_in_model

            from genrl.lean_lora import make_lean

            lc = LoraConfig(r=lora_rank, lora_alpha=lora_alpha or 2 * lora_rank,
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
            inject_adapter_in_model(lc, self.model.model.dit)
            make_lean(self.model.model.dit)
            for n, p in self.model.model.dit.named_parameters():
                p.requires_grad_("lora_" in n)
        else:
            for m in expert:
                m.requires_grad_(True)
        self.feature_dim, self.model_action_dim = mc.dit_config.hidden_size, mc.max_action_dim
        self.image_token_id = mc.vlm_config.image_token_id
        self._tokens_per_image: int | None = None

    def tokens_per_image(self, pixel_values: torch.Tensor) -> int:
        if self._tokens_per_image is None:
            with torch.no_grad():
                f = self.model.model.vlm.get_image_features(pixel_values[:1, 0]).pooler_output
            self._tokens_per_image = int(f.shape[1])
        return self._tokens_per_image

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        emb = m.embed_action_time(cond["state"], x.to(cond["state"].dtype), t.float())
        out = m.model(action_embeds=emb, input_ids=cond["input_ids"], pixel_values=cond["pixel_values"],
                      attention_mask=cond["attention_mask"], pixel_attention_mask=cond["pixel_attention_mask"])
        h = out.last_hidden_state[:, -self.c.horizon:]
        return m.action_out_proj(h).float(), h.float()


class RobotFlowPolicy(FlowPolicy):
    """Action-chunk flow policy + Flow-Noise noise head + critic value head (see module docstring)."""

    sample_format = "episode"  # outputs are scored by the environment episodes (rewards/episode.py)

    def __init__(self, config: RobotPolicyConfig, lora_rank: int = 0, lora_alpha: float | None = None):
        super().__init__()
        c = self.config = config
        self.lora_rank, self.lora_alpha = (lora_rank, lora_alpha) if config.backbone == "pi0" else (0, None)
        if not 1 <= c.action_chunk <= c.horizon:
            raise ValueError(f"action_chunk {c.action_chunk} must be in [1, horizon={c.horizon}]")
        if c.backbone == "mlp":
            self.expert = MLPActionExpert(c)
        elif c.backbone == "pi0":
            self.expert = PI0ActionExpert(c, lora_rank, lora_alpha)
        else:
            raise ValueError(f"unknown backbone {c.backbone!r}; use mlp or pi0")
        f, d = self.expert.feature_dim, self.expert.model_action_dim
        self.per_token = c.backbone == "pi0"  # pi0: one feature per action token; mlp: one vector per chunk
        out = d if self.per_token else c.horizon * d
        self.noise_head = _mlp([f, *c.noise_hidden, out], nn.Tanh)
        self.value_head = _mlp([f, *c.value_hidden, 1], nn.ReLU)
        for m in self.value_head:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.value_head[-1].weight, std=0.02)
        mean = torch.tensor(c.obs_mean if c.obs_mean is not None else [0.0] * c.obs_dim, dtype=torch.float32)
        std = torch.tensor(c.obs_std if c.obs_std is not None else [1.0] * c.obs_dim, dtype=torch.float32)
        if mean.numel() != c.obs_dim or std.numel() != c.obs_dim:
            raise ValueError(f"obs_mean/obs_std have {mean.numel()}/{std.numel()} entries, obs_dim is {c.obs_dim}")
        self.register_buffer("obs_mean", mean, persistent=False)
        self.register_buffer("obs_std", std.clamp_min(1e-3), persistent=False)

    # ---- shapes -------------------------------------------------------------------------------------------------
    @property
    def model_action_dim(self) -> int:
        return self.expert.model_action_dim

    def noise_shape(self, batch: int, resolution: int | None = None) -> tuple[int, ...]:
        return (batch, self.config.horizon, self.model_action_dim)

    @property
    def needs_images(self) -> bool:
        return self.config.backbone == "pi0"

    # ---- conditioning -------------------------------------------------------------------------------------------
    def encode(self, obs: torch.Tensor, images: torch.Tensor | None = None) -> dict:
        """obs [B, obs_dim] (env units); images uint8 [B, S, S, 3] (pi0 only) -> conditioning dict."""
        c = self.config
        if obs.ndim != 2 or obs.shape[1] != c.obs_dim:
            raise ValueError(f"observation shape {tuple(obs.shape)} does not match the policy (obs_dim {c.obs_dim})")
        dev = self.obs_mean.device
        o = (obs.to(dev).float() - self.obs_mean) / self.obs_std
        if c.backbone == "mlp":
            return {"obs": o}
        if images is None:
            raise ValueError("the pi0 backbone needs camera images (env.render() frames)")
        mc = self.expert.model.config
        state = torch.zeros(o.shape[0], mc.max_state_dim, device=dev)
        state[:, : c.obs_dim] = o
        pix = images.to(dev).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        pix = nn.functional.interpolate(pix, size=(c.image_size, c.image_size), mode="bilinear", align_corners=False)
        pix = pix[:, None]  # one camera
        n_img = self.expert.tokens_per_image(pix)
        ids = [self.expert.image_token_id] * n_img + list(c.instruction_ids)
        input_ids = torch.tensor(ids, device=dev)[None].expand(o.shape[0], -1)
        return {"state": state, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "pixel_values": pix, "pixel_attention_mask": torch.ones(o.shape[0], 1, dtype=torch.bool, device=dev)}

    # ---- model calls --------------------------------------------------------------------------------------------
    def expert_forward(self, x: torch.Tensor, t: torch.Tensor | float, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity [B, H, D_model] (float32) and action-expert features [B, tokens, F] at (x_t, t)."""
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        v, feat = self.expert(x, t, cond)
        return v.float(), feat

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        return self.expert_forward(x, sigma, cond)[0]

    def noise_std(self, feat: torch.Tensor) -> torch.Tensor:
        """Flow-Noise std [B, H, D_model] in [std_min, std_max] from the step's features."""
        from samplers.action_steps import bounded_std

        z = self.noise_head(feat.float())
        z = z.reshape(feat.shape[0], self.config.horizon, self.model_action_dim)
        return bounded_std(z, self.config.std_min, self.config.std_max)

    def value(self, feat: torch.Tensor) -> torch.Tensor:
        """Critic value [B] from the mean over action tokens of the features (detached if detach_critic)."""
        f = feat.float().mean(1)
        if self.config.detach_critic:
            f = f.detach()
        return self.value_head(f).squeeze(-1)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The executed actions [B, action_chunk, action_dim] of a clean chunk x [B, H, D_model]."""
        return x[:, : self.config.action_chunk, : self.config.action_dim]

    def bc_loss(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None,
                images: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching BC loss: mean over (B, H, D) of ||v(x_t, t) - (eps - a)||^2, t = 0.001 + 0.999 Beta(1.5, 1).
        actions [B, H, action_dim] (padded with zeros to the model's action dims)."""
        b, dev = obs.shape[0], self.obs_mean.device
        a = torch.zeros(b, self.config.horizon, self.model_action_dim, device=dev)
        a[..., : actions.shape[-1]] = actions.to(dev)
        beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
        u = torch.rand(b, generator=generator)
        t = (0.001 + 0.999 * _beta_icdf_sample(beta, u)).to(dev)
        eps = torch.randn(a.shape, generator=generator).to(dev)
        xt = t[:, None, None] * eps + (1 - t[:, None, None]) * a
        v, _ = self.expert_forward(xt, t, self.encode(obs, images))
        return ((v - (eps - a)) ** 2).mean()

    # ---- parameters and files -----------------------------------------------------------------------------------
    def compile_targets(self) -> dict[str, nn.Module]:
        """run.compile: the action expert (the velocity network, called once per denoising step); the noise and
        value heads are single small MLPs."""
        return {"expert": self.expert}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @classmethod
    def from_pretrained(cls, path: str, lora_rank: int | None = None, lora_alpha: float | None = None, **overrides):
        """Load a policy directory. lora_rank None = the rank it was saved with (pi0 backbone; mlp ignores LoRA)."""
        cfg_path = os.path.join(path, "robot_policy.json")
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{path} is not a robot policy directory (no robot_policy.json); pretrain one "
                                    "with `genrl pretrain robot --env robot2d --out DIR`")
        with open(cfg_path) as f:
            raw = json.load(f)
        known = RobotPolicyConfig.__dataclass_fields__
        for k in overrides:
            if k not in known:
                raise ValueError(f"unknown robot policy option {k!r}; valid: {', '.join(known)}")
        raw.update(overrides)
        if lora_rank is None:
            lora_rank, lora_alpha = int(raw.get("lora_rank", 0)), raw.get("lora_alpha", lora_alpha)
        policy = cls(RobotPolicyConfig(**{k: v for k, v in raw.items() if k in known}), lora_rank, lora_alpha)
        weights = os.path.join(path, "model.safetensors")
        if os.path.isfile(weights):
            policy.load_weights(weights, strict=raw.get("backbone", "mlp") == "mlp")
        return policy

    def load_weights(self, path: str, strict: bool = True) -> None:
        from safetensors.torch import load_file

        state = load_file(path)
        own = self.state_dict()
        for k in list(state):  # full-expert weights loaded under LoRA: peft moved them to `.base_layer.`
            if k not in own:
                head, _, leaf = k.rpartition(".")
                alt = f"{head}.base_layer.{leaf}"
                if alt in own:
                    state[alt] = state.pop(k)
        bad = [k for k in state if k not in own or own[k].shape != state[k].shape]
        if bad:
            raise ValueError(f"{path}: tensor {bad[0]!r} does not match the policy config (wrong obs/action dims "
                             "or architecture?)")
        missing = [k for k in own if k not in state and not k.startswith("expert.model.")]
        if strict and missing:
            raise ValueError(f"{path}: missing tensor {missing[0]!r}")
        self.load_state_dict(state, strict=False)

    def save_pretrained(self, directory: str, card: str | None = None) -> None:
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        if self.config.backbone == "mlp":
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        else:  # the frozen pi0 base stays at pi0_path; keep only what training changes
            state = {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}
        save_file(state, os.path.join(directory, "model.safetensors"))
        with open(os.path.join(directory, "robot_policy.json"), "w") as f:
            json.dump({**asdict(self.config), "lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha}, f, indent=1)
        with open(os.path.join(directory, "model_index.json"), "w") as f:
            json.dump({"_class_name": CLASS_NAME}, f)
        if card is not None:
            with open(os.path.join(directory, "README.md"), "w") as f:
                f.write(card)

    def save_trainable(self, directory: str) -> None:
        """A loadable policy directory (`genrl eval --model DIR` works on it)."""
        self.save_pretrained(directory)

    def load_trainable(self, directory: str) -> None:
        self.load_weights(os.path.join(directory, "model.safetensors"), strict=False)

    # ---- samples ------------------------------------------------------------------------------------------------
    def save_samples(self, outputs: list[torch.Tensor], captions: list[str], stem: str,
                     scores: list[float] | None = None, title: str | None = None) -> str:
        """Animated GIF (`stem`.gif) of episodes: outputs = frames uint8 [T, S, S, 3] each; green border = success."""
        from genrl.worlds.gif import save_episode_gif

        return save_episode_gif(outputs, stem + ".gif", scores, title)


def _beta_icdf_sample(beta: torch.distributions.Beta, u: torch.Tensor) -> torch.Tensor:
    """Beta(1.5, 1) by inverse CDF from uniforms u (CDF = x^1.5), so a torch.Generator controls it."""
    a = float(beta.concentration1)
    return u.clamp(1e-6, 1.0) ** (1.0 / a)
