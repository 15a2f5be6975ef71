"""4x4 sudoku: all 288 valid grids, a grid-level train/eval split, puzzles with a unique solution.

Text layout (one character = one token): prompt "sudoku:1030|0200|3000|0001=" (rows separated by '|', 0 =
blank), response the 16 digits of the solved grid row by row ("1234341221434321"). The `sudoku` verifier
(rewards/verifiers.py) scores the last 16 digits of the response against the puzzle's givens.

Split: the 288 solution grids are shuffled with a fixed seed; every third one (96 grids) is held out, so
evaluation puzzles have solutions never seen in pretraining or RL. Puzzles blank `blanks` cells (6..10) of a
grid at random and are kept only if exactly one valid grid matches the givens.
"""

from __future__ import annotations

import itertools
import random
from functools import lru_cache

import numpy as np

N = 4
SPLIT_SEED = 1234
BLANKS = (6, 10)  # inclusive range of blank cells per puzzle
EVAL_PUZZLES_PER_GRID = 2
TRAIN_PUZZLES_PER_GRID = 8


def _valid(g: tuple[int, ...]) -> bool:
    rows = [g[r * 4:(r + 1) * 4] for r in range(4)]
    cols = [g[c::4] for c in range(4)]
    boxes = [[g[(br + i) * 4 + bc + j] for i in range(2) for j in range(2)] for br in (0, 2) for bc in (0, 2)]
    return all(len(set(u)) == 4 for u in rows + cols + boxes)


@lru_cache(maxsize=1)
def all_grids() -> np.ndarray:
    """The 288 valid 4x4 sudoku grids, [288, 16] int8 (digits 1..4), in lexicographic order."""
    perms = list(itertools.permutations(range(1, 5)))
    out = []
    for rows in itertools.product(perms, repeat=4):
        g = tuple(v for r in rows for v in r)
        if _valid(g):
            out.append(g)
    return np.array(out, dtype=np.int8)


@lru_cache(maxsize=1)
def split_grids() -> dict[str, np.ndarray]:
    """{"train": [192, 16], "eval": [96, 16]}: every third grid of a fixed shuffle is held out."""
    g = all_grids()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(g))
    held = np.zeros(len(g), dtype=bool)
    held[order[::3]] = True
    return {"train": g[~held], "eval": g[held]}


def count_solutions(puzzle: np.ndarray) -> int:
    """How many of the 288 grids agree with the givens (non-zero cells) of a [16] puzzle."""
    g = all_grids()
    given = puzzle > 0
    return int((g[:, given] == puzzle[given]).all(axis=1).sum())


def make_puzzle(grid: np.ndarray, rng: random.Random, blanks: tuple[int, int] = BLANKS) -> np.ndarray:
    """Blank cells of `grid` until a unique-solution puzzle with blanks in the range is found."""
    while True:
        k = rng.randint(*blanks)
        cells = rng.sample(range(16), k)
        p = grid.copy()
        p[cells] = 0
        if count_solutions(p) == 1:
            return p


def sample_puzzles(grids: np.ndarray, n: int, rng: np.random.Generator,
                   blanks: tuple[int, int] = BLANKS) -> tuple[np.ndarray, np.ndarray]:
    """n random unique-solution puzzles of random rows of `grids` (vectorised rejection sampling):
    (puzzles [n, 16], solutions [n, 16])."""
    g_all = all_grids()
    outs, sols, have = [], [], 0
    while have < n:
        m = max(2 * (n - have), 64)
        sol = grids[rng.integers(len(grids), size=m)]
        k = rng.integers(blanks[0], blanks[1] + 1, size=m)
        blank = rng.random((m, 16)).argsort(axis=1) < k[:, None]
        puz = np.where(blank, 0, sol).astype(np.int8)
        agree = ((g_all[None] == puz[:, None]) | blank[:, None]).all(axis=2).sum(axis=1)
        ok = agree == 1
        outs.append(puz[ok])
        sols.append(sol[ok])
        have += int(ok.sum())
    return np.concatenate(outs)[:n], np.concatenate(sols)[:n]


def grid_str(cells) -> str:
    return "".join(str(int(v)) for v in cells)


def prompt_text(puzzle) -> str:
    s = grid_str(puzzle)
    return "sudoku:" + "|".join(s[r * 4:(r + 1) * 4] for r in range(4)) + "="


@lru_cache(maxsize=2)
def puzzles(split: str) -> tuple[list[str], list[dict]]:
    """The fixed puzzle list of a split: prompts and verifier metadata ({"puzzle", "solution", "task"})."""
    grids = split_grids()[split]
    per = EVAL_PUZZLES_PER_GRID if split == "eval" else TRAIN_PUZZLES_PER_GRID
    rng = random.Random(SPLIT_SEED + (1 if split == "eval" else 0))
    prompts, meta, seen = [], [], set()
    for g in grids:
        for _ in range(per):
            p = make_puzzle(g, rng)
            key = grid_str(p)
            if key in seen:
                continue
            seen.add(key)
            prompts.append(prompt_text(p))
            meta.append({"task": "sudoku", "puzzle": key, "solution": grid_str(g)})
    return prompts, meta


def pretrain_examples(n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """n (prompt, response) pairs for pretraining: fresh puzzles of TRAIN grids and their solutions."""
    puz, sol = sample_puzzles(split_grids()["train"], n, rng)
    return [(prompt_text(p), grid_str(s)) for p, s in zip(puz, sol)]
