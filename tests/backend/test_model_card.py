"""GraphQL `model.evaluation`: the numbers of the eval.json beside the served GGUF, and its plots."""

from __future__ import annotations

import base64

from tests.conftest import Backend
from tests.support.graphql import Api, Session
from tests.support.tiny_eval import HELDOUT_ITEMS, tiny_model_eval
from tests.support.tiny_model import TinyModel

CARD = """{ model { evaluation {
  passed bitsPerByte valLoss qaF1 qaF1Documents qaQuestions recommendedQuant servedQuant servedPassed
  scoredTokens kQuantsSkipped evaluatedAt evalSeconds lineage
  quants { quant file sizeBytes meanKld p99Kld sameTop pplRatio maxMeanKld minSameTop gateReference passed verdict
           message promptTokensPerSecond generationTokensPerSecond }
  plots { name dataUri }
  core benchmarks { task items accuracy accuracyNorm chance centered
                    ggufs { quant file mode items accuracy pytorchAccuracy agreement flagged } }
} } }"""


async def test_model_card_shows_the_eval_report(
    api: Api, alice: Session, backend: Backend, tiny_model: TinyModel
) -> None:
    report = tiny_model_eval(tiny_model)
    card = (await api.data(CARD, token=alice.access_token))["model"]["evaluation"]
    val, quant, qa = report["validation"], report["quantization"], report["qa"]["modes"]
    assert card["bitsPerByte"] == val["bits_per_byte"] and card["valLoss"] == val["loss"]
    assert card["qaF1"] == qa["off"]["mean_f1"] and card["qaF1Documents"] == qa["documents"]["mean_f1"]
    assert card["qaQuestions"] == 2 and qa["documents"]["asked"] == 1  # one question carries documents
    assert (card["passed"], card["recommendedQuant"]) == (True, "f16")
    assert (card["servedQuant"], card["servedPassed"]) == ("f32", True)  # the backend serves the f32 GGUF
    assert card["scoredTokens"] == quant["scored_tokens"] >= 1024
    assert "multiple of 256" in card["kQuantsSkipped"]
    assert card["lineage"] == report["lineage"] and card["evaluatedAt"] == report["created"]
    f32, f16 = card["quants"]
    assert (f32["quant"], f32["verdict"], f32["meanKld"], f32["maxMeanKld"]) == ("f32", "base", None, None)
    row = quant["rows"][1]
    assert f16 == {
        "quant": "f16",
        "file": "model-f16.gguf",
        "sizeBytes": row["size_bytes"],
        "meanKld": row["mean_kld"],
        "p99Kld": row["p99_kld"],
        "sameTop": row["same_top"],
        "pplRatio": row["ppl_ratio"],
        "maxMeanKld": 1e-4,
        "minSameTop": None,
        "gateReference": row["gate"]["llama_cpp_reference"],
        "passed": True,
        "verdict": "pass",
        "message": row["message"],
        "promptTokensPerSecond": row["speed"]["prompt_tps"],
        "generationTokensPerSecond": row["speed"]["gen_tps"],
    }
    (task,) = report["benchmarks"]["tasks"]  # the cloze task over the val split
    assert card["core"] == report["benchmarks"]["core"] == task["centered"]
    assert card["benchmarks"] == [
        {
            "task": "heldout",
            "items": HELDOUT_ITEMS,
            "accuracy": task["accuracy"],
            "accuracyNorm": task["accuracy_norm"],
            "chance": 0.25,
            "centered": task["centered"],
            "ggufs": [
                {
                    "quant": g["quant"], "file": g["file"], "mode": "multiple-choice", "items": HELDOUT_ITEMS,
                    "accuracy": g["accuracy"], "pytorchAccuracy": g["pytorch_accuracy"],
                    "agreement": g["agreement"], "flagged": False,
                }
                for g in task["ggufs"]
            ],
        }
    ]  # fmt: skip
    assert [g["quant"] for g in task["ggufs"]] == ["f32", "f16"]
    plot, bars = card["plots"]  # no training runs given: the KLD bars and the benchmark bars
    assert bars["name"] == "eval-benchmarks.png"
    png = (tiny_model.gguf_path.parent / report["plots"]["kld"]).read_bytes()
    assert plot == {
        "name": "eval-kld.png",
        "dataUri": "data:image/png;base64," + base64.b64encode(png).decode(),
    }
