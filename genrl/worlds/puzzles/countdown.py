"""Countdown-3: combine three numbers, each exactly once, with + - * / and parentheses to hit a target.

Text layout (one character = one token): prompt "countdown:3,5,7>22=", response an expression such as
"3*5+7" followed by end-of-sequence padding. The `countdown` verifier (rewards/verifiers.py, use_all=True)
evaluates it exactly.

Problems: numbers from 1..12 (sorted multiset), target a positive integer <= 99 reachable by some expression.
Split: every third (numbers, target) problem of a fixed shuffle is held out for evaluation.
Pretraining (the "pretrain != task" gap): half of the responses are a solution, half a random well-formed
expression of the same numbers that usually misses the target, so the base model writes valid expressions
but hits the target only sometimes; RL has to teach the arithmetic.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from functools import lru_cache

SPLIT_SEED = 4321
MAX_NUMBER, MAX_TARGET = 12, 99
OPS = "+-*/"
PRETRAIN_HIT = 0.5


def expressions(nums: tuple[int, int, int]) -> list[tuple[str, Fraction]]:
    """Every expression that uses each of the three numbers once: (text, exact value)."""
    out = []
    for a, b, c in set(itertools.permutations(nums)):
        for o1, o2 in itertools.product(OPS, repeat=2):
            for form in ("{a}{o1}{b}{o2}{c}", "({a}{o1}{b}){o2}{c}", "{a}{o1}({b}{o2}{c})"):
                text = form.format(a=a, b=b, c=c, o1=o1, o2=o2)
                v = _value(text)
                if v is not None:
                    out.append((text, v))
    return sorted(out)


def _value(text: str) -> Fraction | None:
    import ast

    def ev(n):
        if isinstance(n, ast.Constant):
            return Fraction(n.value)
        a, b = ev(n.left), ev(n.right)
        if isinstance(n.op, ast.Div):
            if b == 0:
                raise ZeroDivisionError
            return a / b
        return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(n.op)]

    try:
        return ev(ast.parse(text, mode="eval").body)
    except ZeroDivisionError:
        return None


@lru_cache(maxsize=1)
def all_problems() -> list[tuple[tuple[int, int, int], int, str]]:
    """(numbers, target, one solution) for every sorted triple and reachable integer target in 1..99."""
    out = []
    for nums in itertools.combinations_with_replacement(range(1, MAX_NUMBER + 1), 3):
        sols: dict[int, str] = {}
        for text, v in expressions(nums):
            if v.denominator == 1 and 1 <= v <= MAX_TARGET and int(v) not in sols:
                sols[int(v)] = text
        out += [(nums, t, s) for t, s in sorted(sols.items())]
    return out


@lru_cache(maxsize=1)
def split_problems() -> dict[str, list]:
    probs = all_problems()
    order = list(range(len(probs)))
    random.Random(SPLIT_SEED).shuffle(order)
    held = set(order[::3])
    return {"train": [p for i, p in enumerate(probs) if i not in held],
            "eval": [p for i, p in enumerate(probs) if i in held]}


def prompt_text(nums, target: int) -> str:
    return "countdown:" + ",".join(str(n) for n in nums) + f">{target}="


def problems(split: str, limit: int = 512) -> tuple[list[str], list[dict]]:
    """A fixed list of `limit` problems of the split (evenly spaced over a shuffled order)."""
    probs = split_problems()[split]
    step = max(1, len(probs) // limit)
    chosen = probs[::step][:limit]
    return ([prompt_text(n, t) for n, t, _ in chosen],
            [{"task": "countdown", "numbers": list(n), "target": t, "solution": s} for n, t, s in chosen])


@lru_cache(maxsize=512)
def _exprs(nums) -> list[str]:
    return [t for t, _ in expressions(nums)]


def pretrain_examples(n: int, rng) -> list[tuple[str, str]]:
    """n (prompt, response) pairs of TRAIN problems: a solution with prob. PRETRAIN_HIT, else any expression."""
    probs = split_problems()["train"]
    out = []
    for i in rng.integers(len(probs), size=n):
        nums, target, sol = probs[int(i)]
        if rng.random() >= PRETRAIN_HIT:
            ex = _exprs(nums)
            sol = ex[int(rng.integers(len(ex)))]
        out.append((prompt_text(nums, target), sol))
    return out
