"""datatrove pipeline steps that read and write our raw JSONL documents with the standard `json` module.

datatrove's own JsonlReader/JsonlWriter require `orjson`, which this project does not install.
Records are `{"id", "text", "metadata"}`; task `rank` of `world_size` handles files `rank::world_size`.
"""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep


class JsonlDocumentReader(PipelineStep):
    """Yield the documents of this task's share of `folder/*.jsonl`."""

    name = "read raw documents"
    type = "📖 - READER"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = Path(folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for path in sorted(self.folder.glob("*.jsonl"))[rank::world_size]:
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    record = json.loads(line)
                    self.stat_update("documents")
                    yield Document(text=record["text"], id=record["id"], metadata=record["metadata"])


class JsonlDocumentWriter(PipelineStep):
    """Write the documents reaching it to `folder/{rank:05d}.jsonl`."""

    name = "write filtered documents"
    type = "💽 - WRITER"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = Path(folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"{rank:05d}.jsonl").open("w", encoding="utf-8") as handle:
            for doc in data or ():
                record = {"id": doc.id, "text": doc.text, "metadata": doc.metadata}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.stat_update("documents")
                yield doc
