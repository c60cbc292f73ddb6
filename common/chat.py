"""The one chat contract: how a conversation, its system prompt and its search results become token ids.

Serving (the backend), SFT data (`trainer.data`), verification (`converter`) and `chakor eval` all call
this module, so the model is trained, checked and asked on exactly the same text.

- Format: `<|bos|>` then per message `<|{role}|>\\n{content}<|end|>\\n`, then `<|assistant|>\\n`
  when a generation prompt is asked for. An assistant turn ends with `<|end|>` (the stop token).
  `CHAT_TEMPLATE` (Jinja, embedded in the GGUF) renders exactly what `encode_chat` encodes.
- System prompt: `SYSTEM_PROMPT`, the default of `CHAKOR_CHAT_SYSTEM_PROMPT`, which SFT trains on.
- Sources: search results go into the system turn, numbered for citation (`with_sources`):

      {system prompt}

      Documents (cite them as [1], [2], ...):
      [1] json.dumps: Serialize ``obj`` to a JSON formatted ``str``.

  Web results come under "Web search results" as `[1] title (url)` with the content on the next line;
  documents leave their path out (it is on the source card) to save the small model's context.
- Fitting: `fit_prompt` keeps the first search results and the newest history turns that fit the
  context beside the answer budget; `PromptTooLong` when even the system prompt and the new message
  alone do not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import jinja2
import jinja2.sandbox
from tokenizers import Tokenizer

# The one system prompt: the backend serves it (CHAKOR_CHAT_SYSTEM_PROMPT's default) and SFT data trains on it.
SYSTEM_PROMPT = "You are Chakor, a helpful assistant. Answer concisely."

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
STOP = [END]  # llama-server's stop strings: an answer ends with its turn


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


# Sources ----------------------------------------------------------------------------------------


class SearchMode(Enum):
    """Where a chat turn looks for sources before answering."""

    OFF = "OFF"
    WEB = "WEB"
    DOCUMENTS = "DOCUMENTS"


HEADINGS = {
    SearchMode.WEB: "Web search results (cite them as [1], [2], ...):",
    SearchMode.DOCUMENTS: "Documents (cite them as [1], [2], ...):",
}
# Three results of up to `documents.passages.SNIPPET_CHARS` fit the quickstart model's 256-token context
# beside question and answer.
DOCUMENT_RESULTS = 3


class Source(Protocol):
    """A search result as the prompt needs it: `SearchResult`, or the backend's stored `Source`."""

    @property
    def title(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def content(self) -> str: ...


@dataclass(frozen=True)
class SearchResult:
    """One search result: what the document index returns, the eval's documents and SFT's shown results.

    `content` is the text the prompt shows (a passage's snippet); `score` and `collection` are set by the
    document index.
    """

    title: str
    url: str
    content: str
    score: float = 0.0
    collection: str = ""


def with_sources(system_prompt: str, sources: Sequence[Source], mode: SearchMode = SearchMode.WEB) -> str:
    """The system prompt plus numbered results the answer should cite as [1], [2], ..."""
    if not sources:
        return system_prompt
    lines = [system_prompt, "", HEADINGS[mode]]
    for index, source in enumerate(sources, start=1):
        if mode is SearchMode.DOCUMENTS:  # compact: the path is on the source card, not in the context
            lines.append(f"[{index}] {source.title}: {source.content}")
        else:
            lines.append(f"[{index}] {source.title} ({source.url})\n{source.content}")
    return "\n".join(lines).strip()


# Prompt fitting ---------------------------------------------------------------------------------


class PromptTooLong(ValueError):
    """Even the system prompt and the newest message alone do not fit the context."""


def build_prompt(
    tokenizer: Tokenizer,
    system: str,
    history: Sequence[Message],
    user_text: str,
    ctx_size: int,
    answer_budget: int,
) -> list[int]:
    """Token ids of system + as much recent history as fits + the new user turn + generation prompt.

    Whole turns are dropped from the oldest; the system prompt and the newest user turn always stay.
    """
    limit = ctx_size - answer_budget
    head = [{"role": "system", "content": system}] if system else []
    tail = [{"role": "user", "content": user_text}]
    start = 0
    while True:
        ids = encode_chat(tokenizer, [*head, *history[start:], *tail], add_generation_prompt=True).ids
        if len(ids) <= limit:
            return ids
        if start >= len(history):
            raise PromptTooLong(
                f"the message needs {len(ids)} tokens but the model's context leaves {limit} "
                f"({ctx_size} minus {answer_budget} for the answer)"
            )
        start += 1
        # Keep history starting at a user turn so the model never sees an orphaned answer.
        while start < len(history) and history[start]["role"] != "user":
            start += 1


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt that fits: its ids, the system turn the model sees, and how many results it kept."""

    ids: list[int]
    system: str
    sources_kept: int


def fit_prompt(
    tokenizer: Tokenizer,
    system_prompt: str,
    history: Sequence[Message],
    user_text: str,
    ctx_size: int,
    answer_budget: int,
    sources: Sequence[Source] = (),
    mode: SearchMode = SearchMode.WEB,
) -> FittedPrompt:
    """The prompt with as many of the first `sources` as fit (all, then one fewer, ... then none).

    History turns are dropped from the oldest before a source is; PromptTooLong when the system prompt
    and the new message do not fit even alone.
    """
    for count in range(len(sources), 0, -1):
        system = with_sources(system_prompt, sources[:count], mode)
        try:
            ids = build_prompt(tokenizer, system, history, user_text, ctx_size, answer_budget)
        except PromptTooLong:
            continue
        return FittedPrompt(ids, system, count)
    ids = build_prompt(tokenizer, system_prompt, history, user_text, ctx_size, answer_budget)
    return FittedPrompt(ids, system_prompt, 0)
