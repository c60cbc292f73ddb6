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

from chakor.cli import default_model, tokenizer_beside
from chakor.quickstart import quickstart_dir
from common.settings import load_settings
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
    api_url: str  # the backend's OpenAI-compatible API (`.../v1`)
    ws_url: str
    nginx_ws_url: str


def served_model(tiny_model: TinyModel) -> tuple[Path, Path, str]:
    """(GGUF, tokenizer dir, description): the model `chakor up` would serve (CHAKOR_MODEL_PATH, else the
    quickstart manifest's `served` GGUF under CHAKOR_RUNS_DIR) with its tokenizer; when there is none,
    the tests' random-init stand-in, and the description says so and why."""
    settings = load_settings()
    gguf = default_model(settings)
    source = "CHAKOR_MODEL_PATH" if settings.model_path else str(quickstart_dir(settings) / "manifest.json")
    if gguf is None:
        why = f"no {source}"
    elif not gguf.exists():
        why = f"{gguf} (from {source}) does not exist"
    else:
        tokenizer = settings.tokenizer_path or tokenizer_beside(gguf)
        if tokenizer is not None:
            return gguf, tokenizer, f"served model {gguf.name} (from {source})"
        why = f"no tokenizer beside {gguf}"
    return (
        tiny_model.gguf_path,
        tiny_model.tokenizer_dir,
        f"STAND-IN, not the served model: tests' 2-layer random-init f32 model ({why})",
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
                        api_url=f"{settings.backend_url}/v1",
                        ws_url=settings.graphql_url.replace("http://", "ws://", 1),
                        nginx_ws_url=nginx.replace("http://", "ws://") + "/graphql",
                    )
            finally:
                backend.stop()
    finally:
        llama.stop()
