"""The fixed inputs verification runs on: texts to tokenize, prompts to score, conversations to render."""

from __future__ import annotations

TOKENIZER_TEXTS: list[str] = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "It's what they'd've said: don't, won't, I'm, you're, we'll.",
    "Café naïve façade Ångström déjà vu Straße ĳ ǅ",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Emoji 🙂🚀 👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 keycap 1️⃣",
    "def add(a, b):\n\treturn a + b\n\n\tif x:\t\ty = {'k': [1, 2]}\n",
    "   leading spaces, trailing spaces   ",
    "runs   of     spaces\n\n\n\nand\r\nwindows\r\nnewlines \n \n",
    "\t\t\ttabs\t\tand\t mixed \t whitespace",
    "Numbers: 0 7 42 123456789 3.14159 -2e10 1,000,000 2026-11-24",
    "<|end|> <|user|> <|assistant|> <|bos|><|eos|><|pad|><|system|>",
    "almost special: <|end| <end|> <|END|> <|endoftext|> <|user|>x<|",
    "Ω≈ç√∫˜µ≤≥÷ ¡™£¢∞§¶•ªº –— “quotes” ‘single’ «guillemets»",
    "Русский текст, ελληνικά, עברית, العربية, हिन्दी",
    "x" * 300,
    "",
    " ",
    "\n",
    "a\u00a0b\u200bc\u2028d\ufeffe",
    "https://example.com/path?query=1&b=two#frag user@example.org",
]

PROMPTS: list[str] = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n\treturn a + b\n",
    "Café, naïve, façade and déjà vu.",
    "東京は日本の首都です。",
    "Emoji: 🙂 🚀 👍🏽",
    "Numbers 12345 and 3.14159 appear here.",
    "<|user|>\nWhat is two plus three?<|end|>\n<|assistant|>\n",
    "Spaces   and\n\n\nnewlines.",
]

CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi!"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2 + 3?"},
    ],
    [
        {"role": "user", "content": "Say hello in French."},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "And in Japanese? 日本語で"},
    ],
    [{"role": "user", "content": "Code:\n\tprint('x')\n\n  done  "}],
    [{"role": "user", "content": "I typed <|assistant|> and <|end|> myself 🙂"}],
    [{"role": "user", "content": ""}],
]
