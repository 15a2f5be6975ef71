"""Rule-based verifiers for text samples (diffusion-LLM RL: math, sudoku, countdown). Samples are strings
(`input_format = "text"`); the ground truth comes from `metadata` (one dict per sample). Scores are in [0, 1].

- `math_answer`: extracts the last `\\boxed{...}` (else "answer is X", else the last number) and compares it
  with `metadata["answer"]` after normalisation (LaTeX fractions, commas, `$`, units/`\\text`, trailing `.0`,
  degrees, percent); numbers compare exactly as fractions (1/2 == 0.5 == \\frac{1}{2}). 1 if equal else 0.
- `sudoku`: `metadata["puzzle"]` (string of N*N digits with 0 or '.' for blanks, or a list of rows; N = 4 or 9),
  optional `metadata["solution"]`. The answer grid is the last N*N digits of the `<answer>...</answer>` block
  (else of the whole text). 1 if it is a complete valid grid that keeps every given; else 0, or with
  `partial=True` the fraction of blank cells filled correctly (matching the solution when given, otherwise
  not in conflict with any row/column/box), 0 if a given was changed.
- `countdown`: `metadata["numbers"]`, `metadata["target"]`. The equation is the last `<answer>...</answer>`
  block (else the last non-empty line), an optional "= result" is dropped. It must use only + - * / and
  parentheses on integers; by default every given number exactly once (TinyZero / d1 rule, `use_all=True`;
  `use_all=False`: each at most once, the original game). Evaluated exactly (fractions) through `ast`, never
  `eval`. 1 if it equals the target, else `format_score` if it parsed and used valid numbers (TinyZero uses
  0.1; default 0.0), else 0.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import register

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _need_meta(name: str, metadata, keys: tuple[str, ...]) -> None:
    example = ", ".join(f"'{k}': ..." for k in keys)
    if metadata is None:
        raise ValueError(f"{name} needs metadata per sample with {example}")
    for i, m in enumerate(metadata):
        missing = [k for k in keys if not isinstance(m, dict) or k not in m]
        if missing:
            raise ValueError(f"{name}: metadata[{i}] lacks {missing}; pass dicts like {{{example}}}")


def _answer_block(text: str) -> str | None:
    found = _ANSWER_TAG.findall(text)
    return found[-1] if found else None


# ---- math ---------------------------------------------------------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} with balanced braces (also `\\boxed 5`)."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    s = text[idx:]
    s = s[len("\\boxed"):] if s.startswith("\\boxed") else s[len("\\fbox"):]
    if s.startswith(" "):
        return s.split()[0].split("$")[0] if s.strip() else None
    if not s.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(s):
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            return s[1:i]
    return None


def extract_math_answer(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    m = re.findall(r"answer is[:\s]*\$?([^\n$]+)", text, re.I)
    if m:
        return m[-1].strip().rstrip(".")
    if "####" in text:  # GSM8K style
        return text.rsplit("####", 1)[1].strip()
    nums = _NUMBER.findall(text)
    return nums[-1] if nums else None


def _frac_sub(s: str) -> str:
    # \frac{a}{b} -> (a)/(b), \frac ab -> a/b (innermost first)
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", s)
        s = re.sub(r"\\frac(\d)(\d)", r"\1/\2", s)
    s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
    return s


def normalize_math(ans: str) -> str:
    s = str(ans).strip()
    s = s.replace("{,}", ",").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\circ", "").replace("°", "")
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = _frac_sub(s)
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s)  # x = 5 -> 5
    s = re.sub(r"(\d),(?=\d{3}(?!\d))", r"\1", s)  # 1,000 -> 1000
    s = re.sub(r"\s*(dollars?|cents?|units?|degrees?|meters?|cm|km|inches|feet|hours?|minutes?)\s*$", "", s)
    s = s.replace(" ", "").rstrip(".")
    s = re.sub(r"(\d)\.0+$", r"\1", s)  # 12.0 -> 12
    return s.strip("{}") if s.count("{") == s.count("}") else s


def _as_number(s: str) -> Fraction | None:
    t = s.replace("(", "").replace(")", "")
    try:
        if re.fullmatch(r"-?\d+(?:\.\d+)?/-?\d+(?:\.\d+)?", t):
            a, b = t.split("/")
            return Fraction(a) / Fraction(b)
        if re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:e-?\d+)?", t):
            return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def math_equal(pred: str | None, truth) -> bool:
    if pred is None:
        return False
    a, b = normalize_math(pred), normalize_math(str(truth))
    if a == b:
        return True
    na, nb = _as_number(a), _as_number(b)
    return na is not None and nb is not None and na == nb


@register("math_answer")
class MathAnswer(Reward):
    name = "math_answer"
    input_format = "text"
    batch_size = 1024

    def score(self, samples, prompts, metadata) -> RewardOutput:
        _need_meta(self.name, metadata, ("answer",))
        extracted = [extract_math_answer(s) for s in samples]
        scores = [float(math_equal(e, m["answer"])) for e, m in zip(extracted, metadata)]
        return RewardOutput(torch.tensor(scores), {"extracted": extracted,
                                                   "parsed": torch.tensor([e is not None for e in extracted])})


# ---- sudoku -------------------------------------------------------------------------------------------------------
def parse_grid(grid, n: int | None = None) -> list[list[int]]:
    """A puzzle/solution as N x N ints (0 = blank) from a string ('.' or 0 blanks) or a list of rows."""
    if isinstance(grid, str):
        cells = [0 if c in ".0_" else int(c) for c in grid if c.isdigit() or c in "._"]
    else:
        cells = [int(v or 0) for row in grid for v in row]
    n = n or int(round(len(cells) ** 0.5))
    if n not in (4, 9) or len(cells) != n * n:
        raise ValueError(f"sudoku grids must be 4x4 or 9x9 (16 or 81 cells), got {len(cells)} cells")
    return [cells[r * n:(r + 1) * n] for r in range(n)]


def _units(n: int):
    b = int(n**0.5)
    rows = [[(r, c) for c in range(n)] for r in range(n)]
    cols = [[(r, c) for r in range(n)] for c in range(n)]
    boxes = [[(br + i, bc + j) for i in range(b) for j in range(b)] for br in range(0, n, b) for bc in range(0, n, b)]
    return rows + cols + boxes


def extract_sudoku(text: str, n: int) -> list[list[int]] | None:
    block = _answer_block(text)
    digits = [int(c) for c in (block if block is not None else text) if c.isdigit()]
    if len(digits) < n * n:
        return None
    flat = digits[-n * n:]
    return [flat[r * n:(r + 1) * n] for r in range(n)]


def sudoku_score(grid, puzzle, solution=None, partial: bool = False) -> tuple[float, bool]:
    """(score, complete-and-valid) of an answer grid against the puzzle's givens (see module docstring)."""
    n = len(puzzle)
    if grid is None:
        return 0.0, False
    if any(puzzle[r][c] and grid[r][c] != puzzle[r][c] for r in range(n) for c in range(n)):
        return 0.0, False
    want = set(range(1, n + 1))
    valid = all({grid[r][c] for r, c in unit} == want for unit in _units(n))
    if valid or not partial:
        return float(valid), valid
    blanks = [(r, c) for r in range(n) for c in range(n) if not puzzle[r][c]]
    if not blanks:
        return 0.0, False
    if solution is not None:
        good = sum(grid[r][c] == solution[r][c] for r, c in blanks)
    else:
        bad = set()
        for unit in _units(n):
            counts = Counter(grid[r][c] for r, c in unit)
            bad |= {(r, c) for r, c in unit if counts[grid[r][c]] > 1 or grid[r][c] not in want}
        good = sum((r, c) not in bad for r, c in blanks)
    return good / len(blanks), False


@register("sudoku")
class Sudoku(Reward):
    name = "sudoku"
    input_format = "text"
    batch_size = 1024

    def __init__(self, partial: bool = False):
        self.partial = bool(partial)

    def score(self, samples, prompts, metadata) -> RewardOutput:
        _need_meta(self.name, metadata, ("puzzle",))
        scores, valid = [], []
        for text, m in zip(samples, metadata):
            puzzle = parse_grid(m["puzzle"])
            n = len(puzzle)
            sol = parse_grid(m["solution"], n) if m.get("solution") is not None else None
            s, v = sudoku_score(extract_sudoku(text, n), puzzle, sol, self.partial)
            scores.append(s)
            valid.append(v)
        return RewardOutput(torch.tensor(scores), {"valid": torch.tensor(valid),
                                                   "solved": torch.tensor(valid, dtype=torch.float32)})


# ---- countdown ----------------------------------------------------------------------------------------------------
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


def safe_arith(expr: str) -> tuple[Fraction, list[int]]:
    """Evaluate + - * / ( ) over integer literals exactly; returns (value, literals used). Raises ValueError."""
    if not re.fullmatch(r"[\d+\-*/().\s]+", expr or ""):
        raise ValueError("only digits, + - * / and parentheses are allowed")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {expr!r}") from e
    used: list[int] = []

    def ev(node) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Div) and b == 0:
                raise ValueError("division by zero")
            return _OPS[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        raise ValueError(f"unsupported element {type(node).__name__}")

    return ev(tree), used


def extract_equation(text: str) -> str | None:
    block = _answer_block(text)
    if block is None:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return None
        block = lines[-1]
    return block.split("=")[0].strip() or None


def countdown_score(text: str, numbers, target, use_all: bool = True, format_score: float = 0.0) -> float:
    eq = extract_equation(text)
    if eq is None:
        return 0.0
    try:
        value, used = safe_arith(eq)
    except ValueError:
        return 0.0
    avail = Counter(int(x) for x in numbers)
    got = Counter(used)
    ok = got == avail if use_all else all(got[k] <= avail[k] for k in got)
    if not ok:
        return 0.0
    return 1.0 if value == Fraction(str(target)) else float(format_score)


@register("countdown")
class Countdown(Reward):
    name = "countdown"
    input_format = "text"
    batch_size = 1024

    def __init__(self, use_all: bool = True, format_score: float = 0.0):
        self.use_all, self.format_score = bool(use_all), float(format_score)

    def score(self, samples, prompts, metadata) -> RewardOutput:
        _need_meta(self.name, metadata, ("numbers", "target"))
        eqs = [extract_equation(s) for s in samples]
        scores = [countdown_score(s, m["numbers"], m["target"], self.use_all, self.format_score)
                  for s, m in zip(samples, metadata)]
        return RewardOutput(torch.tensor(scores), {"equation": eqs,
                                                   "solved": torch.tensor([float(s == 1.0) for s in scores])})
