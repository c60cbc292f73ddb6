"""Offline document search: passages from your own files, an on-disk tantivy index, prompt rendering.

- `passages`: read a built-in corpus, a folder, a JSONL file or a `chakor data prepare` output into passages,
- `index`: `DocumentIndex`, the embedded, incremental tantivy index (`chakor docs add|list|remove|reindex`),
- `render`: how search results enter the prompt (shared by the backend, SFT data and the eval).
"""
