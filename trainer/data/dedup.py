"""Exact and near-duplicate removal (MinHash + LSH from datasketch), first occurrence wins.

datasketch rather than datatrove's MinHash: datatrove's is four executor stages writing signature,
bucket and cluster files, built for terabytes; for a corpus of a few MB the in-memory LSH index is
simpler, exactly deterministic and much faster.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import regex
import xxhash
from datasketch import MinHash, MinHashLSH

TOKEN = regex.compile(r"\w+")


@dataclass(frozen=True)
class DedupConfig:
    """Near duplicates: MinHash over word `shingle_size`-grams, Jaccard >= `threshold`."""

    shingle_size: int = 5
    num_perm: int = 128
    threshold: float = 0.8
    seed: int = 1


def _hash32(data: bytes) -> int:
    return xxhash.xxh32_intdigest(data)


def exact_key(text: str) -> str:
    """Texts equal up to case and whitespace share a key."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


def shingles(text: str, size: int) -> set[bytes]:
    """Lower-cased word `size`-grams (the whole text when it has fewer words)."""
    words = TOKEN.findall(text.lower())
    if len(words) <= size:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def minhash(text: str, config: DedupConfig) -> MinHash:
    signature = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=_hash32)
    signature.update_batch(list(shingles(text, config.shingle_size)))
    return signature


def deduplicate(
    documents: Iterable[tuple[str, str]], config: DedupConfig, removed: Counter[str]
) -> Iterator[str]:
    """Ids of the `(id, text)` documents to keep, in input order; counts removals by reason in `removed`."""
    seen: set[str] = set()
    index = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    signatures: dict[str, MinHash] = {}
    for doc_id, text in documents:
        key = exact_key(text)
        if key in seen:
            removed["exact_duplicate"] += 1
            continue
        seen.add(key)
        signature = minhash(text, config)
        if any(signatures[other].jaccard(signature) >= config.threshold for other in index.query(signature)):
            removed["near_duplicate"] += 1
            continue
        index.insert(doc_id, signature)
        signatures[doc_id] = signature
        yield doc_id
