"""GGUF converter and verifier: export directory -> llama.cpp GGUF, and proof that llama.cpp matches it."""

__version__ = "0.1.0"
