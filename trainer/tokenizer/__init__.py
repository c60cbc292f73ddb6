"""Chakor's tokenizer: byte-level BPE training and the chat format (no torch import)."""

from common.chat import (
    ASSISTANT,
    BOS,
    CHAT_TEMPLATE,
    END,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    SYSTEM,
    USER,
    ChatEncoding,
    encode_chat,
    load_tokenizer,
    plain_text_tokenizer,
    render_chat,
    validate_messages,
)
from trainer.tokenizer.train import MIN_VOCAB_SIZE, tokenizer_config, tokenizer_sha256, train_tokenizer

__all__ = [
    "ASSISTANT",
    "BOS",
    "CHAT_TEMPLATE",
    "END",
    "EOS",
    "MIN_VOCAB_SIZE",
    "PAD",
    "SPECIAL_TOKENS",
    "SYSTEM",
    "USER",
    "ChatEncoding",
    "encode_chat",
    "load_tokenizer",
    "plain_text_tokenizer",
    "render_chat",
    "tokenizer_config",
    "tokenizer_sha256",
    "train_tokenizer",
    "validate_messages",
]
