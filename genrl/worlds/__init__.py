"""Embedded worlds that are not images: a generator, a tokenizer/encoding, a small base model and its
pretraining, per world (exact rewards live in the `rewards` package)."""
