"""Exact and near-duplicate removal with datatrove's multi-stage dedup, on disk, at any corpus size.

Exact (3 steps): `ExactDedupSignature` hashes each document's text (lower case, whitespace collapsed),
`ExactFindDedups` merges the sorted hash files of all tasks, `ExactDedupFilter` drops all but one copy.
Near (4 steps, on what exact dedup kept): `MinhashDedupSignature` (word 5-gram MinHash, `num_buckets`
LSH bands of `hashes_per_bucket` hashes), `MinhashDedupBuckets` (one task per band: documents sharing a
band are a duplicate pair), `MinhashDedupCluster` (union-find over the pairs, one task), and
`MinhashDedupFilter` (keeps one document per cluster).

14 bands x 8 hashes is datatrove's default: pairs at Jaccard 0.8 are caught with probability
1-(1-0.8^8)^14 = 0.92, at 0.5 with 0.05. Memory per task depends on that task's share of documents
(signatures are sorted per task), never on the whole corpus; the cluster step holds only duplicates.
Which copy survives is datatrove's choice (deterministic for the same input and task count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.dedup.exact_dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactDedupSignature,
    ExactFindDedups,
)
from datatrove.utils.hashing import HashConfig

from trainer.data.filters import WhitespaceWordTokenizer


@dataclass(frozen=True)
class DedupConfig:
    """Near duplicates: MinHash over word `shingle_size`-grams in `num_buckets` bands of `hashes_per_bucket`."""

    shingle_size: int = 5
    num_buckets: int = 14
    hashes_per_bucket: int = 8
    seed: int = 1


def normalized_text(doc: Document) -> bytes:
    """What exact dedup compares: texts equal up to case and whitespace are duplicates."""
    return " ".join(doc.text.lower().split()).encode("utf-8")


def exact_config() -> ExactDedupConfig:
    return ExactDedupConfig(content_getter=normalized_text, hash_config=HashConfig(precision=64))


def minhash_config(config: DedupConfig) -> MinhashConfig:
    return MinhashConfig(
        n_grams=config.shingle_size,
        num_buckets=config.num_buckets,
        hashes_per_bucket=config.hashes_per_bucket,
        seed=config.seed,
        hash_config=HashConfig(precision=64),
    )


@dataclass(frozen=True)
class DedupFolders:
    """Where the dedup steps keep their files (all under the run's work folder)."""

    root: Path

    @property
    def exact_sigs(self) -> Path:
        return self.root / "exact-sigs"

    @property
    def exact_dups(self) -> Path:
        return self.root / "exact-dups"

    @property
    def minhash_sigs(self) -> Path:
        return self.root / "minhash-sigs"

    @property
    def minhash_buckets(self) -> Path:
        return self.root / "minhash-buckets"

    @property
    def minhash_clusters(self) -> Path:
        return self.root / "minhash-clusters"


def exact_signature(folders: DedupFolders) -> PipelineStep:
    return ExactDedupSignature(str(folders.exact_sigs), config=exact_config())


def exact_find(folders: DedupFolders) -> PipelineStep:
    return ExactFindDedups(str(folders.exact_sigs), str(folders.exact_dups), config=exact_config())


class ExactDuplicateFilter(ExactDedupFilter):
    """datatrove's exact-dedup filter, under the name the report uses."""

    name = "exact dedup"


class NearDuplicateFilter(MinhashDedupFilter):
    """datatrove's MinHash filter, under the name the report uses."""

    name = "near dedup"


def exact_filter(folders: DedupFolders) -> PipelineStep:
    return ExactDuplicateFilter(str(folders.exact_dups), config=exact_config())


def xxhash64_text(text: str) -> int:
    return xxhash.xxh64_intdigest(text.encode("utf-8"))


class TextMinhashSignature(MinhashDedupSignature):
    """`MinhashDedupSignature` hashing its word n-grams (str) with xxhash64 on their UTF-8 bytes.

    datatrove 0.10.1 hands the n-gram strings to xxhash as they are, which xxhash 4 refuses.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hash_func = xxhash64_text


def minhash_signature(folders: DedupFolders, config: DedupConfig) -> PipelineStep:
    return TextMinhashSignature(
        str(folders.minhash_sigs),
        config=minhash_config(config),
        language=WhitespaceWordTokenizer(),  # type: ignore[arg-type]
    )


def minhash_buckets(folders: DedupFolders, config: DedupConfig) -> PipelineStep:
    return MinhashDedupBuckets(
        str(folders.minhash_sigs), str(folders.minhash_buckets), config=minhash_config(config)
    )


def minhash_cluster(folders: DedupFolders, config: DedupConfig) -> PipelineStep:
    return MinhashDedupCluster(
        str(folders.minhash_buckets), str(folders.minhash_clusters), config=minhash_config(config)
    )


def minhash_filter(folders: DedupFolders) -> PipelineStep:
    return NearDuplicateFilter(str(folders.minhash_clusters))
