"""datatrove's multi-stage MinHash dedup: planted near-duplicates go, distinct documents stay."""

from __future__ import annotations

import random
from pathlib import Path

from tests.data.corpus import good_doc
from trainer.data.prepare import PrepareConfig, iter_documents, prepare


def edited(text: str, seed: int, words: int) -> str:
    """`text` with `words` of its words replaced (Jaccard of word 5-grams stays above 0.8 for 3 of ~170)."""
    rng = random.Random(seed)
    tokens = text.split()
    for index in rng.sample(range(len(tokens)), words):
        tokens[index] = "zeppelin"
    return " ".join(tokens)


def test_near_duplicates_across_tasks_are_removed_distinct_kept(tmp_path: Path) -> None:
    # Three sources, so three raw files and three filter tasks: duplicates sit in different tasks.
    sources = [tmp_path / name for name in ("originals", "copies1", "copies2")]
    for folder in sources:
        folder.mkdir()
    # 12 originals share vocabulary and sentence shapes (similar, not duplicates)
    originals = {seed: good_doc(seed) for seed in range(1000, 1012)}
    for seed, text in originals.items():
        (sources[0] / f"{seed}.txt").write_text(text)
    planted = 0
    for seed in list(originals)[:4]:  # clusters of three: the original and two edited copies
        for copy in (1, 2):
            (sources[copy] / f"{seed}.txt").write_text(edited(originals[seed], seed * 10 + copy, words=2))
            planted += 1

    config = PrepareConfig(sources=[str(s) for s in sources], out_dir=tmp_path / "out", tasks=3)
    report = prepare(config)
    assert report["removed"]["dedup"] == {"exact_duplicate": 0, "near_duplicate": planted}
    kept = [doc["text"] for doc in iter_documents(tmp_path / "out")]
    assert len(kept) == len(originals) == report["documents"]
    for seed, text in originals.items():  # one document per cluster survives
        family = {text} | {edited(text, seed * 10 + copy, words=2) for copy in (1, 2)}
        assert len(family & set(kept)) == 1, seed
