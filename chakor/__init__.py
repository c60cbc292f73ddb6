"""Chakor: train your own LLM from raw text and chat with it in the browser."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
