"""Embedded worlds and environments for robot policies (gymnasium-style vectorised envs; see envs.py)."""
