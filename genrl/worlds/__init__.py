"""Embedded worlds that are not images (the puzzles world of masked diffusion LMs, the robot tasks and their
gymnasium-style vectorised environments): generators, encodings, small base models and their pretraining. Exact
rewards live in the `rewards` package."""
