"""Offline document search: passages from your own files, an on-disk tantivy index.

- `passages`: read a built-in corpus, a folder, a JSONL file or a `chakor data prepare` output into passages,
- `index`: `DocumentIndex`, the embedded, incremental tantivy index (`chakor docs add|list|remove|reindex`),
- `stdlib`: Python's standard library as documentation (the built-in corpus),
- `cli`: `chakor docs`.
How results enter the prompt is part of the chat contract, `common.chat.with_sources`.
"""
