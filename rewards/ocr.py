"""Text-rendering accuracy (Flow-GRPO / DiffusionNFT `ocr.py`) with rapidocr-onnxruntime's bundled PP-OCRv4
models, so it runs for real offline (Flow-GRPO uses PaddleOCR lang="en": recognition may differ slightly; the
formula is the same).

    target     = text between the first pair of double quotes in the prompt (prompt.split('"')[1])
    recognised = concatenation of all recognised lines (confidence > 0; rapidocr drops lines < 0.5 first,
                 as PaddleOCR's drop_score does)
    both: spaces removed, lowercased
    dist  = 0 if target is a substring of recognised else Levenshtein(recognised, target)
    score = 1 - min(dist, len(target)) / len(target)        in [0, 1]

`backend="paddleocr"` uses Flow-GRPO's exact engine instead (PaddleOCR(use_angle_cls=False, lang="en"); needs
`pip install paddlepaddle paddleocr==2.9.1`, and paddleocr downloads its models on first use).

Prompts without quoted text (or with empty quotes ""): Flow-GRPO crashes on them. Here `missing="error"`
(default) raises a ValueError naming the prompt; `missing="zero"` scores them 0.0 and `missing="nan"` gives NaN
(details["target"] is None for them either way).
"""

from __future__ import annotations

import numpy as np
import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import register


def quoted_target(prompt: str) -> str | None:
    """Text inside the first pair of double quotes (Flow-GRPO: prompt.split('"')[1]); None if absent/empty."""
    parts = prompt.split('"')
    if len(parts) < 2 or not parts[1].strip():
        return None
    return parts[1]


def normalise(text: str) -> str:
    return text.replace(" ", "").lower()


def levenshtein(a: str, b: str) -> int:
    try:
        import Levenshtein

        return Levenshtein.distance(a, b)
    except ImportError:  # small pure-Python fallback (same result)
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]


def ocr_score(recognised: str, target: str) -> float:
    """Flow-GRPO's reward for one image: 1 - min(lev, len(target)) / len(target), 1.0 if target is a substring."""
    rec, tgt = normalise(recognised), normalise(target)
    if not tgt:
        raise ValueError("OCR target text is empty after removing spaces")
    dist = 0 if tgt in rec else min(levenshtein(rec, tgt), len(tgt))
    return 1.0 - dist / len(tgt)


class PaddleEngine:
    """Flow-GRPO's engine, PaddleOCR 2.x, behind rapidocr's call signature."""

    def __init__(self, use_cls: bool = False, use_gpu: bool = False):
        try:
            from paddleocr import PaddleOCR
        except ImportError as e:
            raise ImportError("backend='paddleocr' needs: pip install paddlepaddle paddleocr==2.9.1") from e
        self.ocr = PaddleOCR(use_angle_cls=use_cls, lang="en", use_gpu=use_gpu, show_log=False)

    def __call__(self, image, use_cls: bool = False):
        result = self.ocr.ocr(np.asarray(image.convert("RGB")), cls=use_cls)
        lines = (result or [None])[0] or []
        return [[box, text, conf] for box, (text, conf) in lines] or None, 0.0


@register("ocr")
class OcrReward(Reward):
    name = "ocr"
    input_format = "pil"

    def __init__(self, missing: str = "error", backend: str = "rapidocr", use_cls: bool = False,
                 text_score: float = 0.5, batch_size: int = 8, device=None, dtype=None, engine=None):
        if missing not in ("error", "zero", "nan"):
            raise ValueError(f"ocr: missing must be 'error', 'zero' or 'nan', got {missing!r}")
        self.missing = missing
        self.use_cls = bool(use_cls)  # Flow-GRPO: PaddleOCR(use_angle_cls=False)
        self.batch_size = batch_size
        if engine is None:
            if backend == "rapidocr":
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as e:
                    raise ImportError("the ocr reward needs rapidocr-onnxruntime: pip install 'genrl[rewards]'") from e
                engine = RapidOCR(text_score=float(text_score))
            elif backend == "paddleocr":
                engine = PaddleEngine(use_cls=self.use_cls, use_gpu=str(device or "cpu").startswith("cuda"))
            else:
                raise ValueError(f"ocr: backend must be 'rapidocr' or 'paddleocr', got {backend!r}")
        self.engine = engine  # any callable (image, use_cls) -> (list of [box, text, conf] | None, elapsed)

    def recognise(self, image) -> str:
        result, _ = self.engine(image, use_cls=self.use_cls)
        return "".join(text for _, text, conf in (result or []) if float(conf) > 0)

    def check_inputs(self, prompts, metadata=None) -> None:
        if self.missing == "error":
            for p in prompts:
                if quoted_target(p) is None:
                    shown = p if len(p) <= 80 else p[:77] + "..."
                    raise ValueError(f"ocr: prompt {shown!r} has no text in double quotes; quote the text to render "
                                     "(e.g. 'a sign that says \"OPEN\"') or load('ocr', missing='zero')")

    def score(self, images, prompts, metadata=None) -> RewardOutput:
        self.check_inputs(prompts)
        targets = [quoted_target(p) for p in prompts]
        scores, texts = [], []
        for image, target in zip(images, targets):
            text = self.recognise(image) if target is not None else ""
            texts.append(text)
            if target is None:
                scores.append(0.0 if self.missing == "zero" else float("nan"))
            else:
                scores.append(ocr_score(text, target))
        return RewardOutput(torch.tensor(np.asarray(scores, dtype=np.float32)), {"text": texts, "target": targets})
