"""Chakor's tokenizer: byte-level BPE training (no torch import). The chat format it serves is
the foundation's contract, `common.chat`."""

from trainer.tokenizer.train import MIN_VOCAB_SIZE, tokenizer_config, tokenizer_sha256, train_tokenizer

__all__ = ["MIN_VOCAB_SIZE", "tokenizer_config", "tokenizer_sha256", "train_tokenizer"]
