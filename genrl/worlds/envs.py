"""Environment registry for robot policies: `make_env(env_id, num_envs, **options)`.

Every env follows gymnasium's VectorEnv API without autoreset, on torch tensors:
    obs, info = env.reset(seed=[s_0, ..., s_{N-1}])            obs float32 [N, obs_dim]
    obs, reward, terminated, truncated, info = env.step(a)     a [N, action_dim]; info["success"] bool [N]
    env.render() -> uint8 [N, S, S, 3] (a top-down picture for GIFs); env.expert() -> scripted expert
A finished env ignores its actions until the next reset. Initial states are a pure function of the seeds.

Ids: "robot2d" (built in, torch-vectorised) and "metaworld/<task>-v3" (MuJoCo, `pip install genrl[robot]`;
MT1 tasks, e.g. metaworld/reach-v3, metaworld/push-v3). Faults: an env whose step raises or returns a
non-finite observation/reward is marked in info["fault"] and finished; the episode is dropped by the caller.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import numpy as np
import torch

_FACTORIES: dict[str, Callable] = {}
METAWORLD_TASKS = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-close-v3", "button-press-v3",
                   "window-open-v3", "peg-insert-side-v3")


def register_env(env_id: str, factory: Callable) -> None:
    """Register `factory(num_envs, **options)` under `env_id` (tests register faulty envs this way)."""
    _FACTORIES[env_id] = factory


def available() -> list[str]:
    return sorted(set(_FACTORIES) | {f"metaworld/{t}" for t in METAWORLD_TASKS})


def make_env(env_id: str, num_envs: int, **options):
    if env_id in _FACTORIES:
        return _FACTORIES[env_id](num_envs, **options)
    if env_id.startswith("metaworld/"):
        return MetaWorldVectorEnv(env_id.split("/", 1)[1], num_envs, **options)
    close = difflib.get_close_matches(env_id, available(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown environment id {env_id!r}{hint}; available: {', '.join(available())} "
                     "(any metaworld MT1 task as metaworld/<task>-v3)")


def _robot2d(num_envs: int, **options):
    from genrl.worlds.robot2d import Robot2DEnv

    return Robot2DEnv(num_envs, **options)


register_env("robot2d", _robot2d)


def _import_metaworld():
    try:
        import gymnasium
        import metaworld
    except ImportError as e:
        raise ImportError(f"metaworld environments need the robot extra: pip install 'genrl[robot]' "
                          f"(metaworld==3.1.1, mujoco==3.3.0); import failed: {e}") from None
    return gymnasium, metaworld


_MT1_CACHE: dict[str, object] = {}


def _mt1(task: str):
    """metaworld.MT1(task, seed=0), built once per process (it samples the task's 50 goal/object variations)."""
    if task not in _MT1_CACHE:
        import warnings

        _, metaworld = _import_metaworld()
        if task not in metaworld.MT1.ENV_NAMES:
            close = difflib.get_close_matches(task, metaworld.MT1.ENV_NAMES, n=1)
            hint = f" (did you mean 'metaworld/{close[0]}'?)" if close else ""
            raise ValueError(f"unknown metaworld task {task!r}{hint}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _MT1_CACHE[task] = metaworld.MT1(task, seed=0)
    return _MT1_CACHE[task]


class MetaWorldVectorEnv:
    """N metaworld MT1 envs (from the benchmark `metaworld.MT1(task, seed=0)`: 50 fixed goal/object variations, as
    `gym.make("Meta-World/MT1", env_name=task)` samples from) stepped in a loop; 39-d obs, 4-d action in [-1, 1].
    reset(seed=s) selects variation s mod 50, so the initial state is a pure function of the seed (MT1 evaluates
    on its training variations). reward: sparse, 1 on the first step with info["success"] (then terminated);
    truncation at `max_steps` (default 150; the scripted experts succeed within ~60-120)."""

    obs_dim, action_dim = 39, 4

    def __init__(self, task: str, num_envs: int, max_steps: int = 150, render_size: int = 64):
        import warnings

        _import_metaworld()  # the clear error names the extra even when an MT1 benchmark is cached
        bench = _mt1(task)
        cls = bench.train_classes[task]
        self.tasks = list(bench.train_tasks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.envs = [cls() for _ in range(num_envs)]
        self.task, self.num_envs, self.max_steps, self.render_size = task, num_envs, max_steps, render_size
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.done = torch.zeros(num_envs, dtype=torch.bool)
        self.obs = torch.zeros(num_envs, self.obs_dim)

    def reset(self, seed: list[int] | None = None):
        import warnings

        seeds = list(seed) if seed is not None else list(range(self.num_envs))
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset: {len(seeds)} seeds for {self.num_envs} envs")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = []
            for e, s in zip(self.envs, seeds):
                e.set_task(self.tasks[int(s) % len(self.tasks)])
                rows.append(torch.as_tensor(np.asarray(e.reset(seed=int(s))[0]), dtype=torch.float32))
            self.obs = torch.stack(rows)
        self.t.zero_()
        self.done.zero_()
        return self.obs.clone(), {}

    def step(self, actions: torch.Tensor):
        import warnings

        a = torch.as_tensor(actions, dtype=torch.float32).reshape(self.num_envs, self.action_dim).clamp(-1, 1)
        n = self.num_envs
        reward, success = torch.zeros(n), torch.zeros(n, dtype=torch.bool)
        terminated, truncated, fault = (torch.zeros(n, dtype=torch.bool) for _ in range(3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, e in enumerate(self.envs):
                if self.done[i]:
                    continue
                try:
                    o, _, _, _, info = e.step(a[i].numpy())
                    o = torch.as_tensor(np.asarray(o), dtype=torch.float32)
                    ok = bool(torch.isfinite(o).all())
                except Exception:  # a simulator error ends this episode only (counted as a fault)
                    ok, info = False, {}
                self.t[i] += 1
                if not ok:
                    fault[i] = terminated[i] = True
                    continue
                self.obs[i] = o
                success[i] = bool(info.get("success", 0.0) > 0.5)
                terminated[i] = success[i]
                truncated[i] = not success[i] and int(self.t[i]) >= self.max_steps
        reward = success.float()
        self.done |= terminated | truncated
        return self.obs.clone(), reward, terminated, truncated, {"success": success, "fault": fault}

    def expert(self):
        """The task's scripted metaworld policy (e.g. SawyerReachV3Policy), applied row by row."""
        from metaworld import policies

        name = "Sawyer" + "".join(p.capitalize() for p in self.task.removesuffix("-v3").split("-")) + "V3Policy"
        if not hasattr(policies, name):
            raise ValueError(f"metaworld has no scripted policy {name} for task {self.task!r}")
        return _RowExpert(getattr(policies, name)())

    def render(self) -> torch.Tensor:
        """Schematic top-down frames from the observation (hand red, object blue, goal green; x in [-0.5, 0.5],
        y in [0.3, 1.0]), so GIFs need no OpenGL."""
        o = self.obs
        pts = [(o[:, 36:38], 0.04, (60, 180, 75)), (o[:, 4:6], 0.03, (40, 90, 220)), (o[:, 0:2], 0.025, (220, 40, 40))]
        return schematic_frames(pts, self.render_size, lo=(-0.5, 0.3), hi=(0.5, 1.0))


class _RowExpert:
    def __init__(self, policy):
        self.policy = policy

    def reset(self, n: int, generator: torch.Generator | None = None) -> None:
        pass

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.as_tensor(self.policy.get_action(o.numpy()), dtype=torch.float32) for o in obs])


def schematic_frames(points, size: int, lo=(-1.0, -1.0), hi=(1.0, 1.0)) -> torch.Tensor:
    """Discs drawn on a light background: points = [(xy [N, 2], radius, rgb), ...] in world units."""
    n = points[0][0].shape[0]
    ax = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    xs = lo[0] + ax * (hi[0] - lo[0])
    ys = hi[1] - ax * (hi[1] - lo[1])
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([xx, yy], -1)[None]
    img = torch.full((n, size, size, 3), 245, dtype=torch.uint8)
    for xy, r, color in points:
        m = (grid - xy[:, None, None, :].float()).norm(dim=-1) < r
        img[m] = torch.tensor(color, dtype=torch.uint8)
    return img


EVAL_SEED_OFFSET = 1_000_000


def episode_prompts(source: str, key: str = "data.prompts"):
    """`episodes:N` -> N initial-state ids 'init 0' .. 'init N-1' (training); `episodes:eval:N` -> N ids from
    EVAL_SEED_OFFSET on (held out). Metadata {"init_seed": s} per prompt; the id is the env reset seed."""
    from genrl.data import PromptSet

    parts = source.split(":")
    try:
        if len(parts) == 2:
            n, offset = int(parts[1]), 0
        elif len(parts) == 3 and parts[1] == "eval":
            n, offset = int(parts[2]), EVAL_SEED_OFFSET
        else:
            raise ValueError
        if n < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"{key}: {source!r} is not episodes:N or episodes:eval:N with N >= 1") from None
    seeds = [offset + i for i in range(n)]
    return PromptSet([f"init {s}" for s in seeds], [{"init_seed": s} for s in seeds], source)
