"""The perplexity filter (as CCNet): score documents with a small reference language model, drop the worst.

The reference model is a `chakor export` folder (weights, config.json, tokenizer), loaded with the
trainer's own model code on CPU, once per task (lazily, so the step pickles as a path). A document's
score is its perplexity under the model, `exp(mean next-token NLL)`, over `<|bos|>` + its first
`max_tokens` tokens: the opening of a document says whether it is prose of the kind the model knows,
and capping the length bounds the cost per document. Documents are scored `batch_size` at a time
(right-padded, padding masked out of the mean).

Two ways to set the cut: `max_perplexity` (a fixed threshold, one pass), or `drop_worst` percent (two
passes: `ScorePerplexity` scores every document and writes the scores, in stream order, and a histogram of
log-perplexity per task; `StoredPerplexityFilter` then derives the threshold from all tasks' histograms
and filters with the stored scores, so the model runs once per document). The histogram has 0.01-nat
bins, so the cut is within 1% of the exact percentile's perplexity, in memory that does not grow with
the corpus.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.batching import batched

from common.chat import BOS, load_tokenizer, plain_text_tokenizer, special_id

DEFAULT_MAX_TOKENS = 256
DEFAULT_BATCH = 16
LOG_PPL_EDGES = np.linspace(
    0.0, 25.0, 2501
)  # 0.01 nats per bin, up to perplexity 7e10 (then one overflow bin)


def check_export(path: Path) -> Path:
    """`path` as a resolved export folder, or a clear error before any work starts."""
    path = Path(path).expanduser().resolve()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"--perplexity-model {path}: no {name} (expected a `chakor export` folder)"
            )
    return path


class PerplexityScorer:
    """Perplexities of texts under an exported model (built on first use)."""

    def __init__(self, export_dir: Path, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.export_dir = Path(export_dir)
        self.max_tokens = max_tokens
        self._loaded: tuple[Any, Any, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"export_dir": self.export_dir, "max_tokens": self.max_tokens, "_loaded": None}

    def _load(self) -> tuple[Any, Any, int]:
        if self._loaded is None:
            # lazy: torch, here and through trainer.export, loads only in a worker that scores (the step
            # pickles as a path, and `chakor data` without a perplexity model never imports it)
            import torch

            # lazy: trainer.export imports torch (see above)
            from trainer.export import load_export

            torch.set_num_threads(1)  # one task per core: the executor provides the parallelism
            model, cfg = load_export(self.export_dir)
            tokenizer = load_tokenizer(self.export_dir)
            self.max_tokens = min(self.max_tokens, cfg.max_seq_len - 1)
            self._loaded = (model, plain_text_tokenizer(tokenizer), special_id(tokenizer, BOS))
        return self._loaded

    def score(self, texts: list[str]) -> list[float]:
        """Perplexity of each text (see the module docstring); inf for a text with no tokens."""
        # lazy: torch loads only in a worker that scores (see _load)
        import torch
        import torch.nn.functional as F  # lazy, as torch above

        model, tokenizer, bos = self._load()
        rows = [
            [bos, *encoding.ids[: self.max_tokens]]
            for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        ]
        width = max(len(row) for row in rows)
        tokens = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row) - 1] = 1.0
        with torch.inference_mode():
            logits = model(tokens[:, :-1])
            nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
        counts = mask.sum(dim=1)
        means = (nll * mask).sum(dim=1) / counts.clamp(min=1)
        return [
            math.exp(m) if c > 0 else math.inf for m, c in zip(means.tolist(), counts.tolist(), strict=True)
        ]


class PerplexityFilter(BaseFilter):
    """Remove documents whose perplexity under the reference model exceeds `max_perplexity`
    (reason `perplexity_above_max`); the scores' mean and spread are in the step's stats."""

    name = "perplexity"

    def __init__(
        self, scorer: PerplexityScorer, max_perplexity: float, batch_size: int = DEFAULT_BATCH
    ) -> None:
        super().__init__(batch_size=batch_size)
        self.scorer = scorer
        self.max_perplexity = max_perplexity

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        results: list[bool | tuple[bool, str]] = []
        for score in self.scorer.score([doc.text for doc in batch]):
            self.stat_update("perplexity", value=score if math.isfinite(score) else 0, unit="doc")
            results.append(score <= self.max_perplexity or (False, "perplexity_above_max"))
        return results


class ScorePerplexity(PipelineStep):
    """Drop-worst pass 1: score every document reaching this step; write `folder/{rank:05d}.scores`
    (float64, stream order) and `folder/{rank:05d}.hist.npy` (log-perplexity histogram). Yields nothing."""

    name = "perplexity scores"
    type = "📊 - STATS"

    def __init__(self, scorer: PerplexityScorer, folder: Path, batch_size: int = DEFAULT_BATCH) -> None:
        super().__init__()
        self.scorer, self.folder, self.batch_size = scorer, Path(folder), batch_size

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counts = np.zeros(LOG_PPL_EDGES.size, dtype=np.int64)  # bin i: log-ppl below edge i (last: overflow)
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"{rank:05d}.scores").open("wb") as out:
            for batch in batched(data or (), self.batch_size):
                scores = np.array(self.scorer.score([doc.text for doc in batch]), dtype=np.float64)
                out.write(scores.tobytes())
                bins = np.searchsorted(LOG_PPL_EDGES, np.log(np.maximum(scores, 1.0)), side="left")
                np.add.at(counts, np.minimum(bins, LOG_PPL_EDGES.size - 1), 1)
                self.stat_update("documents", value=len(batch))
        np.save(self.folder / f"{rank:05d}.hist.npy", counts)
        yield from ()


def drop_worst_threshold(folder: Path, percent: float) -> float:
    """The perplexity above which the worst `percent` of all scored documents lie (bin-accurate)."""
    counts = sum(
        (np.load(path) for path in sorted(Path(folder).glob("*.hist.npy"))),
        start=np.zeros(LOG_PPL_EDGES.size, dtype=np.int64),
    )
    total = int(counts.sum())
    keep = math.ceil(total * (1 - percent / 100))
    if keep <= 0:
        return -math.inf
    index = int(np.searchsorted(np.cumsum(counts), keep, side="left"))
    return math.inf if index >= LOG_PPL_EDGES.size - 1 else math.exp(float(LOG_PPL_EDGES[index]))


class StoredPerplexityFilter(BaseFilter):
    """Drop-worst pass 2: remove documents above the `drop_worst` percentile, using pass 1's scores
    (the same documents reach it in the same order; reason `perplexity_above_max`)."""

    name = "perplexity"

    def __init__(self, folder: Path, drop_worst: float) -> None:
        super().__init__()
        self.folder, self.drop_worst = Path(folder), drop_worst
        self._scores: BinaryIO | None = None
        self._threshold = math.inf

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._threshold = drop_worst_threshold(self.folder, self.drop_worst)
        with (self.folder / f"{rank:05d}.scores").open("rb") as self._scores:
            yield from super().run(data, rank, world_size)
            if self._scores.read(1):
                raise RuntimeError(f"perplexity scores of task {rank} outnumber its documents")
        self._scores = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        assert self._scores is not None
        raw = self._scores.read(8)
        if len(raw) != 8:
            raise RuntimeError("fewer perplexity scores than documents: the scoring pass saw other input")
        score = float(np.frombuffer(raw, dtype=np.float64)[0])
        self.stat_update("perplexity", value=score if math.isfinite(score) else 0, unit="doc")
        return score <= self._threshold or (False, "perplexity_above_max")
