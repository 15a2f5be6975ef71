"""Task registry of the puzzles world: prompt splits and pretraining example generators."""

from __future__ import annotations

from genrl.worlds.puzzles import countdown, sudoku

TASKS = {"sudoku": sudoku, "countdown": countdown}
RESPONSE_LENGTH = 16  # response tokens of both tasks (countdown pads with end-of-sequence tokens)


def task_prompts(source: str, key: str = "data.prompts") -> tuple[list[str], list[dict], str]:
    """("sudoku:eval" etc.) -> (prompts, metadata, name); ValueError naming the valid splits."""
    task, _, split = source.partition(":")
    if task not in TASKS or split not in ("train", "eval"):
        raise ValueError(f"{key}: unknown puzzles source {source!r}; use sudoku:train, sudoku:eval, "
                         "countdown:train or countdown:eval")
    fn = sudoku.puzzles if task == "sudoku" else countdown.problems
    prompts, meta = fn(split)
    return list(prompts), [dict(m) for m in meta], source
