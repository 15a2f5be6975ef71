"""The puzzles world for diffusion language models: 4x4 sudoku and countdown-3 (docs/dllm.md).

Prompt sources (`data.prompts` / `eval.prompts`): "sudoku:train", "sudoku:eval", "countdown:train",
"countdown:eval"; each prompt carries the metadata the `sudoku` / `countdown` verifiers need."""

from genrl.worlds.puzzles.tasks import TASKS, task_prompts

__all__ = ["TASKS", "task_prompts"]
