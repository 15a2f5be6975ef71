"""Prompt-set generators that let the shipped recipes run without downloading anything: GenEval-style metadata
(`geneval`) and text-rendering prompts for the OCR reward (`ocr`). `genrl data NAME --out DIR` writes them."""
