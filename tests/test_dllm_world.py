"""The puzzles world: grids, split, unique-solution puzzles, countdown problems, prompt sources, verifiers."""

from __future__ import annotations

import numpy as np
import pytest

import rewards
from genrl.data import load_prompts
from genrl.worlds.puzzles import countdown, sudoku


def test_sudoku_grids_split_and_puzzles():
    g = sudoku.all_grids()
    assert g.shape == (288, 16) and len({sudoku.grid_str(x) for x in g}) == 288
    sp = sudoku.split_grids()
    train, held = {sudoku.grid_str(x) for x in sp["train"]}, {sudoku.grid_str(x) for x in sp["eval"]}
    assert len(held) == 96 and len(train) == 192 and not train & held
    ps = load_prompts("sudoku:eval", "eval.prompts")
    assert len(ps) == 192 and len(set(ps.prompts)) == 192
    for prompt, m in zip(ps.prompts[:40], ps.metadata[:40]):
        puz = np.array([int(c) for c in m["puzzle"]], dtype=np.int8)
        assert sudoku.count_solutions(puz) == 1 and m["solution"] in held
        assert 6 <= (puz == 0).sum() <= 10 and prompt == sudoku.prompt_text(puz)
        out = rewards.load("sudoku")([m["solution"]], [prompt], [m])
        assert float(out.scores[0]) == 1.0 and float(out.details["solved"][0]) == 1.0
    puz, sol = sudoku.sample_puzzles(sp["train"], 32, np.random.default_rng(0))
    assert all(sudoku.count_solutions(p) == 1 for p in puz) and all(sudoku.grid_str(s) in train for s in sol)


def test_sudoku_verifier_hand_made():
    m = {"puzzle": "1030040220000001", "solution": "1234341221434321"}
    r, part = rewards.load("sudoku"), rewards.load("sudoku", partial=True)
    good, wrong_given = "1234341221434321", "2234341221434321"
    half = "1234341221344321"  # keeps the givens, two blanks of the third row wrong
    assert r([good], ["p"], [m]).scores.tolist() == [1.0]
    assert part([wrong_given], ["p"], [m]).scores.tolist() == [0.0]  # a changed given scores 0
    assert part([half], ["p"], [m]).scores.tolist() == [pytest.approx(0.8)]  # 8 of the 10 blanks right


def test_countdown_problems_and_verifier():
    probs = countdown.split_problems()
    assert len(probs["eval"]) > 1000 and not {(n, t) for n, t, _ in probs["train"]} & \
        {(n, t) for n, t, _ in probs["eval"]}
    ps = load_prompts("countdown:eval", "eval.prompts")
    cd = rewards.load("countdown")
    assert cd([m["solution"] for m in ps.metadata[:50]], ps.prompts[:50], ps.metadata[:50]).scores.min() == 1.0
    m = {"numbers": [3, 5, 7], "target": 22}
    assert cd(["3*5+7", "3+5+7", "3*5", "15+7"], ["p"] * 4, [m] * 4).scores.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert ps.prompts[0].startswith("countdown:") and ps.prompts[0].endswith("=")
