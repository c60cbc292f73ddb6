"""GraphQL types of the model card that `chakor eval` wrote (eval.json beside the served GGUF)."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from backend.services.model_info import Evaluation
from evaluation.report import GgufChoices, QuantRow, TaskResult


@strawberry.type(
    description="One GGUF against the f32 export: llama-perplexity KL divergence, its gate, speed."
)
class QuantEvaluation:
    quant: str
    file: str
    size_bytes: float
    mean_kld: float | None
    p99_kld: float | None
    same_top: float | None = strawberry.field(
        description="Share of tokens whose most likely token is unchanged."
    )
    ppl_ratio: float | None
    max_mean_kld: float | None = strawberry.field(description="The gate: highest mean KLD allowed.")
    min_same_top: float | None
    gate_reference: str | None = strawberry.field(description="The llama.cpp figures the gate comes from.")
    passed: bool | None
    verdict: str
    message: str | None
    prompt_tokens_per_second: float | None
    generation_tokens_per_second: float | None

    @classmethod
    def from_row(cls, row: QuantRow) -> QuantEvaluation:
        kld, gate, speed = row.kld, row.gate, row.speed
        return cls(
            quant=row.quant,
            file=row.file,
            size_bytes=row.size_bytes,
            mean_kld=None if kld is None else kld.mean_kld,
            p99_kld=None if kld is None else kld.p99_kld,
            same_top=None if kld is None else kld.same_top,
            ppl_ratio=None if kld is None else kld.ppl_ratio,
            max_mean_kld=None if gate is None else gate.max_mean_kld,
            min_same_top=None if gate is None else gate.min_same_top,
            gate_reference=None if gate is None else gate.llama_cpp_reference,
            passed=row.passed,
            verdict=row.verdict,
            message=row.message,
            prompt_tokens_per_second=None if speed is None else speed.prompt_tps,
            generation_tokens_per_second=None if speed is None else speed.gen_tps,
        )


@strawberry.type(description="One GGUF on a benchmark through llama-perplexity, against PyTorch's choices.")
class BenchmarkGguf:
    quant: str
    file: str
    mode: str = strawberry.field(
        description="llama-perplexity's input: hellaswag, winogrande, multiple-choice."
    )
    items: int
    accuracy: float
    pytorch_accuracy: float = strawberry.field(
        description="PyTorch's, under the same (llama-perplexity) rule."
    )
    agreement: float = strawberry.field(description="Share of items where the GGUF picks what PyTorch picks.")
    flagged: bool = strawberry.field(description="It flips more than 5% of PyTorch's choices.")

    @classmethod
    def from_result(cls, found: GgufChoices) -> BenchmarkGguf:
        return cls(
            quant=found.quant,
            file=found.file,
            mode=found.mode,
            items=found.n,
            accuracy=found.accuracy,
            pytorch_accuracy=found.pytorch_accuracy,
            agreement=found.agreement,
            flagged=found.flagged,
        )


@strawberry.type(
    description="A multiple-choice benchmark scored on the PyTorch export (eval.json benchmarks)."
)
class BenchmarkTask:
    task: str
    items: int
    accuracy: float = strawberry.field(description="Largest summed log-likelihood (lm-eval acc).")
    accuracy_norm: float | None = strawberry.field(description="Per character (lm-eval acc_norm).")
    chance: float
    centered: float = strawberry.field(description="(headline accuracy - chance) / (1 - chance).")
    ggufs: list[BenchmarkGguf]

    @classmethod
    def from_result(cls, task: TaskResult) -> BenchmarkTask:
        return cls(
            task=task.task,
            items=task.n,
            accuracy=task.accuracy,
            accuracy_norm=task.accuracy_norm,
            chance=task.chance,
            centered=task.centered,
            ggufs=[BenchmarkGguf.from_result(g) for g in task.ggufs],
        )


@strawberry.type(description="A PNG of the eval report, inline as a data: URI.")
class EvalPlot:
    name: str
    data_uri: str


@strawberry.type(
    description="The model card: `chakor eval`'s numbers for the export the served GGUF came from."
)
class ModelEvaluation:
    passed: bool = strawberry.field(description="No quantization gate failed.")
    bits_per_byte: float = strawberry.field(description="Validation loss / ln 2 x tokens / bytes.")
    val_loss: float
    qa_f1: float | None = strawberry.field(description="Held-out questions, token-F1, no search.")
    qa_f1_documents: float | None = strawberry.field(description="The same with DOCUMENTS search.")
    qa_questions: int | None
    recommended_quant: str | None = strawberry.field(description="The smallest GGUF that passed its gate.")
    served_quant: str | None = strawberry.field(
        description="The served file's row; null: the report does not cover it."
    )
    served_passed: bool | None
    scored_tokens: int = strawberry.field(description="Tokens the KL divergence was measured on.")
    k_quants_skipped: str | None
    evaluated_at: str | None
    eval_seconds: float | None
    quants: list[QuantEvaluation]
    lineage: JSON
    plots: list[EvalPlot]
    core: float | None = strawberry.field(description="CORE: the centred accuracy mean over the benchmarks.")
    benchmarks: list[BenchmarkTask]

    @classmethod
    def from_summary(cls, evaluation: Evaluation) -> ModelEvaluation:
        card = evaluation.card
        return cls(
            passed=card.passed,
            bits_per_byte=card.bits_per_byte,
            val_loss=card.val_loss,
            qa_f1=card.qa_f1,
            qa_f1_documents=card.qa_f1_documents,
            qa_questions=card.qa_questions,
            recommended_quant=card.recommended,
            served_quant=card.served_quant,
            served_passed=card.served_passed,
            scored_tokens=card.scored_tokens,
            k_quants_skipped=card.k_quants_skipped,
            evaluated_at=card.created,
            eval_seconds=card.total_seconds,
            quants=[QuantEvaluation.from_row(row) for row in card.rows],
            lineage=JSON(card.lineage),
            plots=[EvalPlot(name=p.name, data_uri=p.data_uri) for p in evaluation.plot_images],
            core=None if card.benchmarks is None else card.benchmarks.core,
            benchmarks=[]
            if card.benchmarks is None
            else [BenchmarkTask.from_result(t) for t in card.benchmarks.tasks],
        )
