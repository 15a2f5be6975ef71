"""The built-in torch-vectorised 2-D reaching task around an obstacle (see env.py)."""

from genrl.worlds.robot2d.env import Robot2DEnv, Robot2DExpert

__all__ = ["Robot2DEnv", "Robot2DExpert"]
