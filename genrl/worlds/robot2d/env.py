"""robot2d: a point robot reaches a goal past a round obstacle; torch-vectorised, gymnasium VectorEnv-style API.

World (all envs stepped together as tensors, [-1, 1]^2 plane):
  start  p0 = (U(-0.15, 0.15), -0.75)      goal g = (U(-0.15, 0.15), 0.75)
  obstacle: disc of radius 0.25 at c = (U(-0.1, 0.1), U(-0.1, 0.1)), right between start and goal
  action a in [-1, 1]^2 (clipped), p <- clip(p + 0.08 a, -1, 1)
  success: |p - g| < 0.1 (terminates, reward 1); collision: |p - c| < 0.25 (terminates, reward 0);
  truncation after `max_steps` (default 40) env steps.
  obs = [p, g, c] (6 floats); reward is sparse: 1 on the success step, else 0.
The scripted expert passes the obstacle on the left or on the right (a fair coin per episode), so the
demonstrations are bimodal: the average of the two modes drives straight into the obstacle. Initial states are
a pure function of the reset seed.

API (gymnasium.vector.VectorEnv, without autoreset): reset(seed=[...]) -> (obs [N, 6], info);
step(actions [N, 2]) -> (obs, reward [N], terminated [N], truncated [N], info{"success": [N]}). Finished envs
keep their state and ignore actions until the next reset. render() -> uint8 frames [N, size, size, 3].
"""

from __future__ import annotations

import torch

RADIUS, GOAL_TOL, SPEED = 0.25, 0.1, 0.08


class Robot2DEnv:
    obs_dim, action_dim = 6, 2

    def __init__(self, num_envs: int, max_steps: int = 40, render_size: int = 64):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs, self.max_steps, self.render_size = num_envs, max_steps, render_size
        self.p = self.g = self.c = None
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.done = torch.zeros(num_envs, dtype=torch.bool)
        self.seeds: list[int] = []

    def reset(self, seed: list[int] | None = None):
        seeds = list(seed) if seed is not None else list(range(self.num_envs))
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset: {len(seeds)} seeds for {self.num_envs} envs")
        rows = []
        for s in seeds:
            gen = torch.Generator().manual_seed(int(s))
            u = torch.rand(5, generator=gen)
            rows.append(torch.stack([(u[0] - 0.5) * 0.3, torch.tensor(-0.75), (u[1] - 0.5) * 0.3,
                                     torch.tensor(0.75), (u[2] - 0.5) * 0.2, (u[3] - 0.5) * 0.2]))
        st = torch.stack(rows)
        self.seeds = seeds
        self.p, self.g, self.c = st[:, 0:2].clone(), st[:, 2:4].clone(), st[:, 4:6].clone()
        self.t.zero_()
        self.done.zero_()
        return self._obs(), {}

    def _obs(self) -> torch.Tensor:
        return torch.cat([self.p, self.g, self.c], dim=1)

    def step(self, actions: torch.Tensor):
        a = torch.as_tensor(actions, dtype=torch.float32).reshape(self.num_envs, self.action_dim)
        live = ~self.done
        a = torch.nan_to_num(a, nan=0.0).clamp(-1, 1)
        self.p = torch.where(live[:, None], (self.p + SPEED * a).clamp(-1, 1), self.p)
        self.t = self.t + live.long()
        success = live & ((self.p - self.g).norm(dim=1) < GOAL_TOL)
        collide = live & ~success & ((self.p - self.c).norm(dim=1) < RADIUS)
        terminated = success | collide
        truncated = live & ~terminated & (self.t >= self.max_steps)
        self.done = self.done | terminated | truncated
        reward = success.float()
        return self._obs(), reward, terminated, truncated, {"success": success, "collision": collide}

    def expert(self) -> Robot2DExpert:
        return Robot2DExpert()

    def render(self) -> torch.Tensor:
        """Top-down frames [N, S, S, 3] uint8: obstacle grey, goal green, robot red."""
        s = self.render_size
        ax = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
        yy, xx = torch.meshgrid(-ax, ax, indexing="ij")
        grid = torch.stack([xx, yy], -1)[None]  # [1, S, S, 2]
        img = torch.full((self.num_envs, s, s, 3), 245, dtype=torch.uint8)

        def disc(center, radius, color):
            m = (grid - center[:, None, None, :]).norm(dim=-1) < radius
            img[m] = torch.tensor(color, dtype=torch.uint8)

        disc(self.c, RADIUS, (150, 150, 150))
        disc(self.g, GOAL_TOL, (60, 180, 75))
        disc(self.p, 0.05, (220, 40, 40))
        return img


class Robot2DExpert:
    """Scripted bimodal expert: per episode a side s = +-1 (coin from `generator`); below the obstacle it heads for
    the waypoint c + (0.42 s, 0), above it for the goal; full speed. Call `reset(n, generator)` per episode batch."""

    def __init__(self):
        self.side = None

    def reset(self, n: int, generator: torch.Generator | None = None) -> None:
        self.side = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        p, g, c = obs[:, 0:2], obs[:, 2:4], obs[:, 4:6]
        way = c + torch.stack([self.side * (RADIUS + 0.17), torch.zeros_like(self.side)], 1)
        target = torch.where((p[:, 1] < c[:, 1])[:, None], way, g)
        d = target - p
        return (d / d.norm(dim=1, keepdim=True).clamp_min(SPEED)).clamp(-1, 1)
