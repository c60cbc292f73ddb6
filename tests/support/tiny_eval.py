"""A real `chakor eval` of the tiny test model, written next to its GGUF so the backend serves its card."""

from __future__ import annotations

import json
from typing import Any

from tests.support.tiny_model import TinyModel, tiny_corpus

QUESTIONS = [
    {"question": "What does json.dumps do?", "reference": "Serialize obj to a JSON formatted str."},
    {
        "question": "What does math.sqrt do?",
        "reference": "Return the square root of x.",
        "documents": [
            {"title": "math.sqrt", "url": "pydoc:math.sqrt", "snippet": "Return the square root of x."}
        ],
    },
]


HELDOUT_ITEMS = 16  # the benchmark row of the model card: the cloze task over the val split, seconds to run


def tiny_model_eval(tiny: TinyModel) -> dict[str, Any]:
    """eval.json of the tiny model (f32 + f16), made once per session: later calls read it back."""
    from common.settings import get_settings
    from converter.convert import convert
    from evaluation.report import EVAL_JSON, read_report
    from evaluation.run import EvalOptions, evaluate
    from tests.converter.test_valdata import write_data
    from trainer.tokenizer.train import tokenizer_sha256

    root = tiny.gguf_path.parent
    existing = read_report(root / EVAL_JSON)
    if existing is not None:
        return existing.to_dict()
    data = root / "eval-shards"
    write_data(data, tiny.tokenizer_dir, tokenizer_sha256(tiny.tokenizer_dir), tiny_corpus()[:40])
    qa = root / "eval-qa.jsonl"
    qa.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    f16 = convert(tiny.export_dir, root / "model-f16.gguf", "f16")
    settings = get_settings()
    options = EvalOptions(
        tiny.export_dir, [tiny.gguf_path, f16], data, root, qa_path=qa, min_kld_tokens=1024,
        tasks={"heldout": "val"}, limit=HELDOUT_ITEMS,
        system_prompt=settings.chat_system_prompt, max_tokens=settings.chat_max_tokens,
        serving_threads=settings.llama_threads, llama_server_bin=settings.llama_server_bin,
    )  # fmt: skip
    return evaluate(options).to_dict()
