"""The stack the latency benchmarks measure: llama-server on the served model behind the capture proxy
(tests/support/capture_llama.py), a backend of its own on that proxy, and nginx in front of the backend.

Direct clients and the backend both reach llama-server through the same proxy, so every path pays the
same proxy hop and the proxy's record of each token is a common reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chakor.quickstart import quickstart_model
from chakor.settings import load_settings
from tests.conftest import backend_settings, start_backend, start_llama_server
from tests.support.capture_llama import CaptureClient, capture_proxy
from tests.support.nginx import running_nginx
from tests.support.tiny_model import TinyModel


@dataclass
class InferenceStack:
    """llama-server on the served model behind the capture proxy, a backend on the proxy, nginx in front."""

    model: str
    tokenizer_dir: Path
    system_prompt: str
    llama_url: str  # the proxy's URL: direct clients and the backend both use it
    capture: CaptureClient
    backend_pid: int
    graphql_url: str
    ws_url: str
    nginx_ws_url: str


def served_model(tiny_model: TinyModel) -> tuple[Path, Path, str]:
    """(GGUF, tokenizer dir, description): the quickstart's served model if there is one, else the stand-in."""
    gguf = quickstart_model(load_settings())
    if gguf is not None and gguf.exists() and (gguf.parent / "tokenizer").is_dir():
        return gguf, gguf.parent / "tokenizer", f"quickstart {gguf.name}"
    return (
        tiny_model.gguf_path,
        tiny_model.tokenizer_dir,
        "stand-in: tests' 2-layer random-init f32 model (no quickstart model in runs/ on this machine)",
    )


@contextmanager
def latency_stack(
    tiny_model: TinyModel, mongo_uri: str, logs_dir: Path, nginx_dir: Path
) -> Iterator[InferenceStack]:
    """The stack, for the duration of the block."""
    gguf, tokenizer_dir, description = served_model(tiny_model)
    logs = logs_dir / "inference-bench"
    llama = start_llama_server(gguf, logs)
    assert llama.health_url is not None
    try:
        with capture_proxy(llama.health_url.removesuffix("/health"), logs) as capture:
            settings = backend_settings(
                mongo_uri,
                capture.url,
                tiny_model,
                db_name="chakor_bench_latency",
                model_path=gguf,
                tokenizer_path=tokenizer_dir,
            )
            backend = start_backend(settings, logs)
            try:
                with running_nginx(settings.backend_port, nginx_dir) as nginx:
                    assert backend.pid is not None
                    yield InferenceStack(
                        model=description,
                        tokenizer_dir=tokenizer_dir,
                        system_prompt=settings.chat_system_prompt,
                        llama_url=capture.url,
                        capture=capture,
                        backend_pid=backend.pid,
                        graphql_url=settings.graphql_url,
                        ws_url=settings.graphql_url.replace("http://", "ws://", 1),
                        nginx_ws_url=nginx.replace("http://", "ws://") + "/graphql",
                    )
            finally:
                backend.stop()
    finally:
        llama.stop()
