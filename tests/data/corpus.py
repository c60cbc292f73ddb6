"""A small planted corpus: distinct good documents, near/exact duplicates, junk and bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "river",
    "mountain",
    "garden",
    "window",
    "teacher",
    "library",
    "engine",
    "market",
    "village",
    "winter",
    "summer",
    "planet",
    "doctor",
    "kitchen",
    "bridge",
    "forest",
    "ocean",
    "letter",
    "music",
    "island",
    "station",
    "painter",
    "harbor",
    "journey",
    "silver",
    "morning",
    "evening",
    "pocket",
    "lantern",
    "meadow",
    "castle",
    "farmer",
    "sailor",
    "basket",
    "candle",
    "meadow",
    "orchard",
    "valley",
    "thunder",
    "feather",
    "mirror",
    "compass",
    "blanket",
    "ladder",
    "carpet",
    "violin",
    "puzzle",
    "tunnel",
]
VERBS = [
    "carries",
    "finds",
    "builds",
    "watches",
    "paints",
    "opens",
    "follows",
    "remembers",
    "crosses",
    "gathers",
]
STOP = ["the", "of", "and", "to", "with", "that", "have", "be"]


def sentence(rng: random.Random) -> str:
    a, b, c = rng.sample(WORDS, 3)
    return f"The {a} {rng.choice(VERBS)} the {b} of the {c} and {rng.choice(STOP)} {rng.choice(WORDS)}."


def good_doc(seed: int, sentences: int = 14) -> str:
    rng = random.Random(seed)
    return " ".join(sentence(rng) for _ in range(sentences))


def near_duplicate(text: str) -> str:
    words = text.split()
    words[10] = "zeppelin"
    return " ".join(words)


GOOD_CODE = (
    "def add(a: int, b: int) -> int:\n"
    '    """Return the sum of a and b."""\n'
    "    return a + b\n\n\n"
    "def scale(values: list[float], factor: float) -> list[float]:\n"
    "    return [v * factor for v in values]\n"
)
JUNK = {
    "symbols.txt": "#### $$$ %%% &&& *** @@@ !!! ^^^ ~~~ ||| " * 20,
    "repeated.txt": "The price of the best deal is here and now.\n" * 40,
    "short.txt": "Too short.",
}
MINIFIED = "x=1;" * 600 + "\nprint(x)\nprint(x)\n"


def write_corpus(root: Path) -> dict[str, Path]:
    """Folder `docs/` (prose, code, junk, one undecodable file) and `extra.jsonl` with bad lines.

    Planted: 9 distinct good prose docs (7 in docs/, 2 in the JSONL), 1 good code file; 2 near
    duplicates and 1 exact duplicate (whitespace changed); 3 prose junk docs (symbols,
    repetition, too short), 1 minified code file, 1 file that is mostly undecodable bytes; 2 malformed
    JSONL lines (3 and 5) and 1 record without the text field (line 6).
    """
    docs = root / "docs"
    docs.mkdir(parents=True)
    for i in range(6):
        (docs / f"good{i}.txt").write_text(good_doc(i))
    (docs / "near0.md").write_text(near_duplicate(good_doc(0)))
    (docs / "near1.md").write_text(near_duplicate(good_doc(1)))
    (docs / "exact2.rst").write_text("  " + good_doc(2).replace(" ", "   ") + "\n")
    (docs / "module.py").write_text(GOOD_CODE)
    (docs / "minified.py").write_text(MINIFIED)
    for name, text in JUNK.items():
        (docs / name).write_text(text)
    # a few bad bytes in a good document are dropped and counted; a mostly-binary file is removed
    (docs / "good_with_bad_bytes.txt").write_bytes(b"\xff\xfe" + good_doc(100).encode() + b"\xc3")
    (docs / "binary.txt").write_bytes(bytes(range(128, 256)) * 4)
    (docs / "image.png").write_bytes(b"\x89PNG")
    jsonl = root / "extra.jsonl"
    lines = [
        json.dumps({"body": good_doc(6)}),
        json.dumps({"body": good_doc(7)}),
        "{not json",
        "",
        "[1, 2",
        json.dumps({"other": "no body field"}),
    ]
    jsonl.write_text("\n".join(lines) + "\n")
    return {"docs": docs, "jsonl": jsonl}


PARQUET_DOCS = [good_doc(200 + i) for i in range(5)]


def write_parquet_shards(root: Path) -> str:
    """`shards/part-0.parquet` (3 rows in row groups of 1, smaller than any read batch) and
    `shards/part-1.parquet` (2 rows): the 5 PARQUET_DOCS in column `body`, beside an `id` and a `url`
    column the reader must not need. Returns the glob spec `DIR/*.parquet:body`."""
    import pyarrow as pa  # lazy: only the parquet tests need it
    import pyarrow.parquet as pq

    shards = root / "shards"
    shards.mkdir(parents=True)
    for part, (start, stop, row_group) in enumerate([(0, 3, 1), (3, 5, 1000)]):
        rows = range(start, stop)
        table = pa.table(
            {
                "id": [f"doc-{i}" for i in rows],
                "body": PARQUET_DOCS[start:stop],
                "url": [f"https://example.test/{i}" for i in rows],
            }
        )
        pq.write_table(table, shards / f"part-{part}.parquet", row_group_size=row_group)
    return f"{shards}/*.parquet:body"
