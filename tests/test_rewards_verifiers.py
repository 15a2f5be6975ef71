"""Text verifiers: math_answer, sudoku, countdown."""

import pytest
import torch

import rewards
from rewards import verifiers as V


@pytest.mark.parametrize(
    "text, truth, ok",
    [
        ("so the result is \\boxed{\\frac{1}{2}}.", "0.5", True),
        ("\\boxed{\\dfrac{3}{4}}", "3/4", True),
        ("first \\boxed{3} then \\boxed{7}", "7", True),
        ("\\boxed{1,000}", "1000", True),
        ("\\boxed{1{,}000}", "1,000", True),
        ("\\boxed{-\\frac12}", "-0.5", True),
        ("\\boxed{\\$18.00}", "18", True),
        ("\\boxed{5\\text{ cm}}", "5", True),
        ("\\boxed{12.0}", "12", True),
        ("\\boxed{12.50}", "12.5", True),
        ("\\boxed{x = 5}", "5", True),
        ("\\boxed{90^\\circ}", "90", True),
        ("\\boxed{\\text{18 dollars}}", "18", True),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", True),
        ("\\boxed{{2}}", "2", True),
        ("We get 3 apples and 4 pears, total 7.", "7", True),
        ("The answer is 42.", 42, True),
        ("reasoning #### 1,234", "1234", True),
        ("\\boxed{8}", "7", False),
        ("no number here", "3", False),
        ("\\boxed{\\frac{1}{3}}", "0.33", False),
    ],
)
def test_math_answer_cases(text, truth, ok):
    out = rewards.load("math_answer")([text], ["q"], [{"answer": truth}])
    assert out.scores.tolist() == [float(ok)]


def test_math_answer_details_and_meta_errors():
    r = rewards.load("math_answer")
    out = r(["\\boxed{2}", "nothing"], ["q", "q"], [{"answer": "2"}, {"answer": "1"}])
    assert out.details["extracted"] == ["2", None] and out.details["parsed"].tolist() == [True, False]
    with pytest.raises(ValueError, match="answer"):
        r(["\\boxed{2}"], ["q"])
    with pytest.raises(ValueError, match="answer"):
        r(["\\boxed{2}"], ["q"], [{"solution": 2}])


# ---- sudoku -------------------------------------------------------------------------------------------------------
SOL4 = "1234341221434321"
PUZ4 = "1.3..4.22..3.3.1"
SOL9 = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
PUZ9 = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"


def _fmt(grid_str, n):
    return "\n".join(" ".join(grid_str[r * n:(r + 1) * n]) for r in range(n))


def test_sudoku_valid_and_invalid():
    r = rewards.load("sudoku")
    texts = [
        f"Let me think.\n<answer>\n{_fmt(SOL4, 4)}\n</answer>",
        f"<answer>{SOL9}</answer>",
        "<answer>" + SOL4[:-2] + "14</answer>",  # last row broken
        "<answer>" + "2" + SOL4[1:] + "</answer>",  # changes a given (and is invalid)
        "<answer>123</answer>",  # too short
    ]
    metas = [{"puzzle": PUZ4}, {"puzzle": PUZ9, "solution": SOL9}, {"puzzle": PUZ4}, {"puzzle": PUZ4},
             {"puzzle": PUZ4}]
    out = r(texts, ["q"] * 5, metas)
    assert out.scores.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert out.details["valid"].tolist() == [True, True, False, False, False]


def test_sudoku_other_valid_completion_and_list_puzzle():
    # a puzzle with no givens accepts any valid grid; puzzle as a list of rows
    empty = [[0] * 4 for _ in range(4)]
    other = "2143341212344321"  # valid 4x4 grid, different from SOL4
    assert rewards.load("sudoku")([other], ["q"], [{"puzzle": empty}]).scores.item() == 1.0


def test_sudoku_partial_credit():
    r = rewards.load("sudoku", partial=True)
    blanks = [i for i, c in enumerate(PUZ4) if c == "."]
    wrong = list(SOL4)
    wrong[blanks[0]] = "4" if SOL4[blanks[0]] != "4" else "3"  # one blank cell wrong
    out = r(["".join(wrong), "".join(wrong)], ["q", "q"], [{"puzzle": PUZ4, "solution": SOL4}, {"puzzle": PUZ4}])
    assert out.scores[0].item() == pytest.approx((len(blanks) - 1) / len(blanks))
    # without a solution: cells in conflict lose credit (the wrong cell and its duplicates in shared units)
    assert 0 < out.scores[1].item() < 1
    with pytest.raises(ValueError, match="4x4 or 9x9"):
        r(["1"], ["q"], [{"puzzle": "123"}])


# ---- countdown ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, score",
    [
        ("<answer>(95 - 2) - 39 + 1</answer>", 0.0),  # all numbers once, but 55 != 53
        ("<answer>95 - 39 - 2 - 1</answer>", 1.0),
        ("think...\n<answer> (95-39) - (2+1) = 53 </answer>", 1.0),
        ("<answer>95 - 39 - 3</answer>", 0.0),  # 3 not given
        ("<answer>95 - 39 - 2</answer>", 0.0),  # 1 unused (use_all)
        ("<answer>95 - 39 - 2 - 1 - 1</answer>", 0.0),  # 1 used twice
        ("<answer>__import__('os')</answer>", 0.0),  # rejected, never evaluated
        ("<answer>95 / (1 - 1) + 39 + 2</answer>", 0.0),  # division by zero, and 1 twice
        ("95 - 39 - 2 - 1", 1.0),  # no tags: last line
        ("", 0.0),
    ],
)
def test_countdown_cases(text, score):
    out = rewards.load("countdown")([text], ["q"], [{"numbers": [95, 39, 2, 1], "target": 53}])
    assert out.scores.item() == score


def test_countdown_options_and_exact_division():
    meta = [{"numbers": [6, 4, 3], "target": 8}]
    assert rewards.load("countdown")(["<answer>6 / 3 * 4</answer>"], ["q"], meta).scores.item() == 1.0
    assert rewards.load("countdown")(["<answer>6 + 3</answer>"], ["q"], meta).scores.item() == 0.0
    assert rewards.load("countdown", use_all=False)(["<answer>4 * (6 / 3)</answer>"], ["q"], meta).scores.item() == 1
    assert rewards.load("countdown", use_all=False)(["<answer>6 + 3 - 1</answer>"], ["q"], meta).scores.item() == 0
    r = rewards.load("countdown", format_score=0.1)
    assert r(["<answer>6 + 4 + 3</answer>"], ["q"], meta).scores.item() == pytest.approx(0.1)
    assert V.safe_arith("(1 + 2) / 3 * -4")[0] == -4
    with pytest.raises(ValueError):
        V.safe_arith("2 ** 10")
    with pytest.raises(ValueError, match="numbers"):
        rewards.load("countdown")(["1"], ["q"], [{"target": 1}])


def test_verifier_scores_are_float32_and_batched():
    r = rewards.load("math_answer")
    out = r([f"\\boxed{{{i}}}" for i in range(2000)], ["q"] * 2000, [{"answer": i % 3} for i in range(2000)])
    assert out.scores.dtype == torch.float32 and out.scores.shape == (2000,)
    assert out.scores.sum().item() == 3  # only 0, 1, 2 match
