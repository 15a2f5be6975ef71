"""Training configuration: dataclasses are the schema (defaults + docs), YAML files in configs/ are instances.

    cfg = load_config("configs/shapes/grpo.yaml", ["train.lr=1e-4", "rewards={ocr: 1.0}"])

Override syntax (command line `genrl train CONFIG.yaml KEY=VALUE ...`; values are parsed as YAML):
  * `train.lr=1e-4`, `sample.group_size=16`, `eval.every=0`     one field, dotted path
  * `rewards={ocr:1.0,pickscore:0.5}`                           a mapping value REPLACES a mapping field whole
  * `rewards.ocr=0.5`                                           one entry of a mapping field (added or changed)
  * `train={lr: 1e-4, steps: 50}`                               a mapping on a section sets only those fields
  * `sample.sde_window_range=[0,5]`, `model.family=null`        lists and null
An unknown key is an error naming the closest valid key; a value of the wrong type is an error naming the
expected type. Floats may be written as `1e-4` (YAML would read that as a string; we accept it).

The `algorithm:` section's schema is the registered algorithm's own Config dataclass, chosen by
`algorithm.name` (grpo | nft | awm ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from genrl.algorithms import AlgorithmConfig, get_algorithm


@dataclass
class ModelConfig:
    path: str = "assets/shapes-base"  # local pipeline directory or hub id
    family: str | None = None  # adapter family (shapes | sd3 | flux); None = from model_index.json
    lora_rank: int = 32  # LoRA rank of the trainable adapter (0 = full fine-tuning where the adapter supports it)
    lora_alpha: float | None = None  # None = adapter default (2 * rank, as the reference)
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword options for the adapter's from_pretrained
    trust_remote_code: bool = False  # run the model repository's own modelling code (LLaDA); only when you trust it


@dataclass
class RunConfig:
    dir: str = "runs/shapes-grpo"  # the run directory (refused if it exists and is non-empty, unless resuming)
    seed: int = 42
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate autocast; SDE math stays fp32)
    log_every: int = 1  # write a metrics.jsonl line every N steps
    tensorboard: bool = True
    max_nonfinite_in_row: int = 3  # abort after this many consecutive skipped (non-finite) updates
    max_idle_steps: int = 20  # abort after this many steps in a row with nothing to learn from (0 = never)
    threads: int = 0  # torch CPU threads (0 = auto: the cores idle when the run starts; genrl/threads.py)
    compile: bool = False  # torch.compile the denoiser (genrl/compile.py): pays in runs longer than a few minutes


@dataclass
class DataConfig:
    prompts: str = "shapes:train"  # "shapes:train" | "shapes:eval" | path to a text file, one prompt per line


@dataclass
class SampleConfig:
    """Rollout sampling. Samples per step = group_size * groups_per_step, split evenly over processes."""

    resolution: int | None = None  # None = the model's native resolution
    steps: int = 10  # sampler steps in rollouts (reference: 10)
    shift: float = 1.0  # sigma-grid shift (SD3.5: 3.0)
    # samplers.sample method: flow_grpo | cps | dance (SDEs) | euler | heun | dpm2 | sa_solver (AWM's reference)
    method: str = "flow_grpo"
    noise_level: float = 0.7  # SDE noise level a (reference SD3: 0.7; CPS: 0.8); SA-Solver's tau (AWM: 0.4)
    sde_window_size: int = 0  # Flow-GRPO-Fast window: SDE only on w consecutive steps (0 = SDE on every step)
    sde_window_range: list[int] | None = None  # [lo, hi]: window start ~ UniformInt[lo, hi - w] (default [0, steps])
    cfg_scale: float = 1.0  # classifier-free guidance in rollouts and training (1 = no CFG)
    group_size: int = 8  # K images per prompt
    groups_per_step: int = 4  # prompts per step
    batch_size: int = 8  # per-process rollout batch
    same_noise: bool = False  # all K images of a group start from the same noise


@dataclass
class AdvantageConfig:
    global_std: bool = True  # normalise by the std of all rewards of the step (reference SD3 default)
    clip_max: float = 5.0  # advantages clipped to [-clip_max, clip_max]
    # negative advantages (after clipping) are multiplied by this: 1 = as the methods publish them, 0 = learn from
    # the better-than-average samples only (NFT's adv_mode positive_only for every method; a deviation, labelled
    # where a shipped config uses it)
    negative_weight: float = 1.0
    eps: float = 1e-4
    filter_zero_std: bool = True  # drop groups whose rewards are all equal (fraction logged as zero_std_ratio)
    # DAPO's dynamic sampling: up to this many extra rollout rounds per step (each groups_per_step new groups) until
    # groups_per_step groups have reward std > 0; informative groups beyond that are dropped. 0 = off
    dynamic_sampling: int = 0
    # hierarchical rewards (genrl/hierarchy.py): [{name, t_min, rewards, reward_options}], each stage's own ensemble
    # and group advantages train the timesteps t_min <= t < the previous stage's t_min; [] = one reward for all
    stages: list[dict] = field(default_factory=list)


@dataclass
class TrainConfig:
    steps: int = 100  # rollout + update rounds; `step` in metrics.jsonl counts these
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    batch_size: int = 8  # per-process training micro-batch (keep = sample.batch_size: ratio == 1 exactly)
    updates_per_step: int = 1  # optimizer updates per step (reference: 2); micro-batches are accumulated
    inner_epochs: int = 1  # passes over the step's samples
    lr_schedule: str = "constant"  # constant | cosine
    lr_warmup_steps: int = 0  # in optimizer updates
    cpu_minutes: float = 0.0  # also stop (evaluating and checkpointing) once the run used this much CPU time (0 = off)


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.9  # effective decay = min((1 + n) / (10 + n), decay)
    every: int = 8  # update the EMA every N optimizer updates (reference: 8)
    # update: once per qualifying optimizer update | reference: Flow-GRPO's per-micro-batch schedule (see genrl/ema.py)
    cadence: str = "update"


@dataclass
class EvalConfig:
    every: int = 10  # evaluate every N steps (0 = never; also at the start and at the end when > 0)
    prompts: str = "shapes:eval"  # same syntax as data.prompts
    num_prompts: int = 32  # N prompts evenly spaced over the source (0 = all)
    train_prompts: int = 0  # also score N training prompts (evenly spaced over data.prompts) as eval/train/...
    steps: int = 20  # deterministic ODE steps (reference: 40 on SD3.5)
    method: str = "euler"
    cfg_scale: float | None = None  # None = sample.cfg_scale
    batch_size: int = 16
    seed: int = 0  # fixed noise: the same images every eval for the same weights
    use_ema: bool = True
    grid_images: int = 16  # images in samples/step_XXXXXX.png


@dataclass
class CheckpointConfig:
    every: int = 10  # steps between checkpoints (and always at the end; 0 = only at the end)
    keep_last: int = 2  # older checkpoints are deleted after a new one is complete


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    algorithm: AlgorithmConfig = field(default_factory=lambda: get_algorithm("grpo").Config())
    rewards: dict[str, float] = field(default_factory=lambda: {"shapes": 1.0})  # reward name -> weight
    reward_options: dict[str, dict] = field(default_factory=dict)  # reward name -> rewards.load options
    ema: EMAConfig = field(default_factory=EMAConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# ------------------------------------------------------------------------------------------------------------
class ConfigError(ValueError):
    """A bad config file, key or value (one line, names the key)."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section_type(cls: type, key: str, raw_section: dict | None) -> Any:
    """Declared type of field `key` of dataclass `cls`, resolving the algorithm section by its name."""
    if cls is Config and key == "algorithm":
        name = (raw_section or {}).get("name", "grpo")
        return get_algorithm(name).Config
    return _hints(cls)[key]


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _unknown(path: str, key: str, valid: list[str]) -> ConfigError:
    full = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" (did you mean {(path + '.' if path else '') + close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {full!r}{hint}; valid keys here: {', '.join(valid)}")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against type `tp` (converting int->float, '1e-4'->float, tuple->list); raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, path)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"config key {path!r} expects {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {path!r} is a section; give a mapping, got {value!r}")
        return _build(tp, value, path)
    if origin in (list, tuple):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key {path!r} expects a list, got {type(value).__name__} {value!r}")
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {path!r} expects a mapping like {{name: value}}, got {value!r}")
        _, vt = typing.get_args(tp) or (Any, Any)
        return {str(k): _coerce(v, vt, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads a bare no / yes (e.g. run.mixed_precision=no) as a bool
            return "yes" if value else "no"
    elif tp is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(f"config key {path!r} expects {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _build(cls: type, raw: dict, path: str = "") -> Any:
    """Instantiate dataclass `cls` from the (possibly partial) mapping `raw`, validating every key."""
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        key = str(key)
        if key not in valid:
            raise _unknown(path, key, valid)
        sub = f"{path}.{key}" if path else key
        tp = _section_type(cls, key, value if isinstance(value, dict) else None)
        kwargs[key] = _coerce(value, tp, sub)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# ------------------------------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=VALUE' -> ('a.b', parsed YAML value). `{k:v}` without the space YAML needs is accepted."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. train.lr=1e-4 or rewards={{ocr: 1.0}})")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    value = value.strip()
    if value.startswith("{") or value.startswith("["):
        value = re.sub(r":(?=[^\s/\\])", ": ", value)
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key!r}: cannot parse value {value!r} ({str(e).splitlines()[0]})") from None
    return key, parsed


def _schema_is_section(path: list[str], raw: dict) -> bool:
    """Whether the dotted path names a dataclass section (mapping values merge) rather than a field."""
    cls: Any = Config
    node = raw
    for key in path:
        if not dataclasses.is_dataclass(cls):
            return False
        names = [f.name for f in dataclasses.fields(cls)]
        if key not in names:
            return False
        sub_raw = node.get(key) if isinstance(node, dict) else None
        cls = _section_type(cls, key, sub_raw if isinstance(sub_raw, dict) else None)
        origin = typing.get_origin(cls)
        if origin in (typing.Union, types.UnionType):
            return False
        node = sub_raw if isinstance(sub_raw, dict) else {}
    return dataclasses.is_dataclass(cls)


def _deep_merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply KEY=VALUE overrides to a raw config mapping (see module docstring for the semantics)."""
    parsed = [parse_override(o) for o in overrides]
    # algorithm.name first: it decides the schema of the algorithm section
    parsed.sort(key=lambda kv: kv[0] != "algorithm.name")
    for key, value in parsed:
        parts = key.split(".")
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                if nxt is not None and not _schema_is_section(parts[: i + 1], raw):
                    raise ConfigError(f"config key {'.'.join(parts[: i + 1])!r} is not a section or mapping")
                nxt = {}
                node[p] = nxt
            node = nxt
        last = parts[-1]
        if isinstance(value, dict) and _schema_is_section(parts, raw) and isinstance(node.get(last), dict):
            _deep_merge(node[last], value)
        else:
            node[last] = value
    return raw


def read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found; pass a YAML file such as configs/shapes/grpo.yaml")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must be a mapping of sections (model:, train:, ...)")
    return data


def _with_default_sections(raw: dict) -> dict:
    """Fill sections the user omitted (dataclass defaults) so overrides into a mapping field merge correctly."""
    out = dict(raw)
    if "rewards" not in out:
        out["rewards"] = dict(Config().rewards)
    return out


def load_config(path: str | None = None, overrides: list[str] | None = None, raw: dict | None = None) -> Config:
    """Defaults <- YAML file (or `raw`) <- overrides, validated into a Config."""
    data = read_yaml(path) if path is not None else dict(raw or {})
    data = _with_default_sections(data)
    data = apply_overrides(data, list(overrides or []))
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks (one-line errors naming the keys)."""
    import math

    s, t = cfg.sample, cfg.train
    if s.group_size < 2:
        raise ConfigError(f"config key 'sample.group_size' must be >= 2 (advantages are relative within a group), got "
                          f"{s.group_size}")
    for key, val in [
        ("sample.steps", s.steps), ("sample.groups_per_step", s.groups_per_step),
        ("sample.batch_size", s.batch_size), ("train.batch_size", t.batch_size),
        ("train.updates_per_step", t.updates_per_step), ("train.inner_epochs", t.inner_epochs),
    ]:
        if val < 1:
            raise ConfigError(f"config key {key!r} must be >= 1, got {val}")
    if t.steps < 0:
        raise ConfigError(f"config key 'train.steps' must be >= 0, got {t.steps}")
    if not 0.0 <= cfg.advantage.negative_weight <= 1.0:
        raise ConfigError(f"config key 'advantage.negative_weight' must be in [0, 1] (1: the advantages as computed, "
                          f"0: positive ones only), got {cfg.advantage.negative_weight}")
    if cfg.advantage.dynamic_sampling < 0:
        raise ConfigError(f"config key 'advantage.dynamic_sampling' must be >= 0 (extra rollout rounds), got "
                          f"{cfg.advantage.dynamic_sampling}")
    if cfg.advantage.dynamic_sampling and not cfg.advantage.filter_zero_std:
        raise ConfigError("advantage.dynamic_sampling re-draws zero-std groups, which only matters when they are "
                          "dropped: set advantage.filter_zero_std=true or advantage.dynamic_sampling=0")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"config key 'train.lr' must be a finite number > 0, got {t.lr}")
    if s.resolution is not None and s.resolution < 1:
        raise ConfigError(f"config key 'sample.resolution' must be a positive number of pixels (or null for the "
                          f"model's own), got {s.resolution}")
    for key, val in [("checkpoint.every", cfg.checkpoint.every), ("eval.every", cfg.eval.every),
                     ("checkpoint.keep_last", cfg.checkpoint.keep_last),
                     ("run.max_idle_steps", cfg.run.max_idle_steps)]:
        if val < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {val}")
    for name, w in cfg.rewards.items():
        if not isinstance(w, int | float) or not math.isfinite(w):
            raise ConfigError(f"config key 'rewards.{name}' must be a finite weight, got {w}")
    if not cfg.rewards:
        raise ConfigError("config key 'rewards' is empty; give at least one, e.g. rewards={shapes: 1.0}")
    from genrl.hierarchy import validate_stages

    try:
        validate_stages(cfg.advantage.stages, cfg.algorithm.name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.run.mixed_precision not in ("no", "fp16", "bf16"):
        raise ConfigError(f"config key 'run.mixed_precision' must be no|fp16|bf16, got {cfg.run.mixed_precision!r}")
    if t.lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"config key 'train.lr_schedule' must be constant|cosine, got {t.lr_schedule!r}")
    if s.sde_window_size < 0 or s.sde_window_size > s.steps:
        raise ConfigError(f"config key 'sample.sde_window_size' must be in [0, sample.steps], got {s.sde_window_size}")
    if s.sde_window_range is not None:
        lo_hi = s.sde_window_range
        if len(lo_hi) != 2 or not (0 <= lo_hi[0] and lo_hi[1] <= s.steps and lo_hi[1] - lo_hi[0] >= s.sde_window_size):
            raise ConfigError(
                f"config key 'sample.sde_window_range' must be [lo, hi] with 0 <= lo, hi <= sample.steps and "
                f"hi - lo >= sample.sde_window_size; got {lo_hi}"
            )
    if len(t.betas) != 2:
        raise ConfigError(f"config key 'train.betas' must be two numbers, got {t.betas}")
    import samplers

    if s.method not in samplers.METHODS:
        raise ConfigError(f"config key 'sample.method' must be one of {', '.join(samplers.METHODS)}, got {s.method!r}")
    eval_methods = samplers.ODE_METHODS + ("sa_solver",)
    if cfg.eval.method not in eval_methods:
        raise ConfigError(f"config key 'eval.method' must be a deterministic sampler ({', '.join(eval_methods)}), "
                          f"got {cfg.eval.method!r}")
    if not (math.isfinite(s.noise_level) and s.noise_level >= 0):
        raise ConfigError(f"config key 'sample.noise_level' must be a finite number >= 0, got {s.noise_level}")
    if s.method == "sa_solver" and s.sde_window_size > 0:
        raise ConfigError("config key 'sample.sde_window_size' does not apply to sample.method=sa_solver (its "
                          "stochastic band is fixed at 0.3 <= t <= 0.9); set it to 0")


def save_config(cfg: Config, path: str) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
