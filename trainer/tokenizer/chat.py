"""Chakor's chat format: special tokens, the Jinja chat template, rendering and masked encoding.

The single source of truth for how a conversation becomes text and token ids. No torch import:
the backend and the converter use it too.

Format: `<|bos|>` then per message `<|{role}|>\\n{content}<|end|>\\n`, then `<|assistant|>\\n`
when a generation prompt is asked for. An assistant turn ends with `<|end|>` (the stop token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import jinja2.sandbox
from tokenizers import Tokenizer

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, SYSTEM, USER, ASSISTANT, END]
ROLES = ("system", "user", "assistant")

# Kept to plain expressions so llama.cpp's minja engine renders it exactly like jinja2 does.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

Message = dict[str, str]


@dataclass
class ChatEncoding:
    """Token ids of a conversation and, per id, whether the model learns to predict it."""

    ids: list[int]
    assistant_mask: list[bool]


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE)


def validate_messages(messages: Sequence[Message]) -> None:
    """Raise ValueError naming the first message that is not `{"role": <role>, "content": str}`."""
    if not messages:
        raise ValueError("conversation has no messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {index}: expected an object, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"message {index}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"message {index}: content must be a string, got {type(content).__name__}")


def render_chat(messages: Sequence[Message], add_generation_prompt: bool) -> str:
    """Render a conversation with CHAT_TEMPLATE (what llama-server renders from the GGUF's template)."""
    validate_messages(messages)
    return _template().render(
        messages=list(messages), add_generation_prompt=add_generation_prompt, bos_token=BOS
    )


def load_tokenizer(tokenizer_dir: Path) -> Tokenizer:
    """Load `tokenizer_dir/tokenizer.json`, checking that every chat special token is one id."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}: run `chakor tokenizer train` first")
    tokenizer = Tokenizer.from_file(str(path))
    missing = [token for token in SPECIAL_TOKENS if tokenizer.token_to_id(token) is None]
    if missing:
        raise ValueError(f"{path} lacks the special tokens {', '.join(missing)}")
    return tokenizer


@lru_cache(maxsize=8)
def plain_text_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of `tokenizer` that never matches special tokens in text (`<|assistant|>` -> plain ids).

    A copy, so the caller's tokenizer keeps its own setting and concurrent users never see it flip.
    """
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.encode_special_tokens = True
    return copy


def special_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of a special token, with a clear error when the tokenizer lacks it."""
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no special token {token}")
    return token_id


def encode_chat(
    tokenizer: Tokenizer, messages: Sequence[Message], add_generation_prompt: bool = False
) -> ChatEncoding:
    """Encode a conversation: structure tokens as special ids, message text as plain text.

    `assistant_mask` is True on assistant content tokens and on the `<|end|>` closing an assistant
    turn; False on `<|bos|>`, role headers, the newlines around them and all other messages. (When
    assistant content starts with whitespace, BPE may merge the header's newline into the first
    content token; that token counts as content.)
    For text without special-token look-alikes, `ids` equals
    `tokenizer.encode(render_chat(messages, add_generation_prompt), add_special_tokens=False).ids`.
    """
    validate_messages(messages)
    plain = plain_text_tokenizer(tokenizer)
    end_id = special_id(tokenizer, END)
    newline_ids = plain.encode("\n", add_special_tokens=False).ids
    ids, mask = [special_id(tokenizer, BOS)], [False]
    for message in messages:
        learn = message["role"] == "assistant"
        ids.append(special_id(tokenizer, f"<|{message['role']}|>"))
        mask.append(False)
        # The header's newline and the content are one text segment, exactly as in the rendered string.
        body = plain.encode("\n" + message["content"], add_special_tokens=False)
        ids.extend(body.ids)
        mask.extend(learn and end > 1 for _, end in body.offsets)
        ids.append(end_id)
        mask.append(learn)
        ids.extend(newline_ids)
        mask.extend([False] * len(newline_ids))
    if add_generation_prompt:
        ids.append(special_id(tokenizer, ASSISTANT))
        ids.extend(newline_ids)
        mask.extend([False] * (1 + len(newline_ids)))
    return ChatEncoding(ids=ids, assistant_mask=mask)
