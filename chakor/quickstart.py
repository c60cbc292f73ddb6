"""`chakor quickstart`: raw text -> tokenizer -> pretrain -> SFT -> export -> GGUF -> verify -> eval, each stage cached."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.table import Table

from chakor.models import add_model
from common import REPO_ROOT
from common.cli import console, settings_or_exit
from common.hashing import sha256_file
from common.model_registry import Kind, RegistryError, load_registry, registry_path, save_registry
from common.settings import Settings
from evaluation.gates import K_QUANTS, k_quant_obstacle
from evaluation.report import EVAL_JSON, EvalReport, read_report
from trainer.configs import ModelConfig, TrainConfig
from trainer.metrics import METRICS_FILE, read_metrics

# f32 is the KL-divergence base of `chakor eval`; q4_k_m is made only when the model is wide enough for K-quants.
QUANT_TYPES = ("f32", "f16", "q8_0", "q4_k_m")
LEGACY_SERVED_QUANT = "q8_0"  # what manifests written before `served` existed serve
VERDICTS = {True: "ok", False: "FAIL", None: "info"}  # verify's `passed`: None for report-only checks


@dataclass(frozen=True)
class Stage:
    """One pipeline step: a `chakor` command, the paths it reads and the path it writes."""

    name: str
    args: tuple[str, ...]
    inputs: tuple[Path, ...]
    output: Path
    fatal: bool = True  # False: a non-zero exit is reported and the pipeline goes on


def quickstart_dir(settings: Settings) -> Path:
    return settings.runs_dir / "quickstart"


def quickstart_model(settings: Settings) -> Path | None:
    """The quickstart's served GGUF (the smallest that passed its eval gate), when a quickstart has finished."""
    manifest_path = quickstart_dir(settings) / "manifest.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    return REPO_ROOT / manifest["gguf"][manifest.get("served") or LEGACY_SERVED_QUANT]


def repo_relative(path: Path) -> str:
    """`path` relative to the repo root when it lies inside it (CHAKOR_RUNS_DIR may point elsewhere)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def stages(root: Path) -> list[Stage]:
    """The quickstart pipeline, in order."""
    clean, tokenizer, shards, sft_data = root / "data", root / "tokenizer", root / "shards", root / "sft-data"
    pretrain, sft, export = root / "pretrain", root / "sft", root / "export"
    steps = [
        Stage(
            "data",
            (
                "data",
                "prepare",
                "--source",
                "local:python-docs",
                "--source",
                "local:python-code",
                "--weight",
                "local:python-code=2",
                "--out",
                str(clean),
            ),
            (),
            clean,
        ),
        Stage(
            "tokenizer",
            ("tokenizer", "train", "--data", str(clean), "--vocab-size", "4096", "--out", str(tokenizer)),
            (clean,),
            tokenizer,
        ),
        Stage(
            "shards",
            ("data", "tokenize", "--data", str(clean), "--tokenizer", str(tokenizer), "--out", str(shards)),
            (clean, tokenizer),
            shards,
        ),
        Stage(
            "sft-data",
            ("data", "sft", "--source", "local:python-grounded", "--out", str(sft_data)),
            (),
            sft_data,
        ),
        # The whole built-in documentation into the document index (CHAKOR_VAR_DIR/docs-index), which
        # DOCUMENTS search in chat and the eval's held-out questions read; incremental, so cheap to repeat.
        Stage(
            "docs",
            ("docs", "add", "local:python-docs", "--report", str(root / "docs-index.json")),
            (),
            root / "docs-index.json",
        ),
        # Validation + samples take ~2.4 s (8 steps' time) and a checkpoint ~0.15 s on a 2-core host: at steps
        # 1, 300 and 600, and one checkpoint at the end (the one SFT reads), not every 100 steps. The same
        # training (equal losses), ~10 s sooner.
        Stage(
            "pretrain",
            (
                "train",
                "--config",
                "tiny",
                "--data",
                str(shards),
                "--eval-every",
                "300",
                "--checkpoint-every",
                "600",
                "--out",
                str(pretrain),
            ),
            (shards, tokenizer),
            pretrain,
        ),
        Stage(
            "sft",
            (
                "sft",
                "--base",
                str(pretrain),
                "--data",
                str(sft_data / "sft.jsonl"),
                # Grounded SFT from the pretrained model, 8 packed rows (~15 conversations) a step; copying
                # from the context appears late and the LR decides how soon. Held-out F1 with DOCUMENTS
                # (chakor eval): 1,800 steps at 1e-3 0.64 (0.56 on another data seed); 1,500 at 2e-3 0.75
                # (0.74); 1,200 at 2e-3 0.69; 800 at 4e-3 0.43 on a 2-core Xeon where 1,500 at 2e-3 gave 0.70.
                # So 1,500 steps at 2e-3: 3.1M tokens (logits for the ~14% labelled).
                "--steps",
                "1500",
                "--lr",
                "2e-3",
                "--eval-every",  # validation + chat samples halfway and at the end (~1.9 s each)
                "750",
                "--out",
                str(sft),
            ),
            (pretrain, sft_data),
            sft,
        ),
        Stage("export", ("export", str(sft), "--out", str(export)), (sft,), export),
    ]
    return steps


# Measured on the quickstart's own stages (issue 32, plain-loop steps on 1 thread): an SFT token costs ~0.74x a
# pretraining token (219 vs 296 ms a step of the same rows; logits for the labelled ~14% only), and export, the
# GGUFs, verify and eval together take about a quarter of the pretraining's step time (40.6 s against ~145 s of
# pretraining steps on the 2-core Xeon, ~60 s against ~255 s on the 2-vCPU EPYC; the steps' times estimated).
SFT_TOKEN_COST = 0.74
AFTER_TRAINING_SHARE = 0.25


def sft_steps(sft: Stage) -> int:
    """The SFT stage's --steps."""
    return int(sft.args[sft.args.index("--steps") + 1])


def pretrain_forecast(sft: Stage) -> str:
    """Before the pretraining: the whole run's time as a multiple of the pretraining's, whose progress bar
    shows its own time left after its first steps. Both stages step through rows of the same size (the
    `tiny` recipe, TrainConfig's defaults)."""
    recipe = TrainConfig()
    after = sft_steps(sft) * SFT_TOKEN_COST / recipe.steps + AFTER_TRAINING_SHARE
    tokens = sft_steps(sft) * recipe.local_batch_size * recipe.seq_len
    return (
        f"Pretraining next, then SFT ({tokens:,} tokens) and the stages after it: about {1 + after:.1f}x the "
        "pretraining's time in all (its progress bar shows its time left from the first steps)"
    )


def sft_forecast(root: Path, sft: Stage) -> str | None:
    """The time left for SFT and the stages after it, from the pretraining's measured tokens/s (None
    without them). The first steps (start-up) are left out of the median."""
    rates = [
        r["tokens_per_s"] for r in read_metrics(root / "pretrain" / METRICS_FILE) if r.get("tokens_per_s")
    ]
    if len(rates) < 4:
        return None
    train = read_json(root / "pretrain" / "run.json")["train"]
    rate = statistics.median(rates[3:])
    tokens = sft_steps(sft) * train["local_batch_size"] * train["seq_len"]
    sft_minutes = tokens * SFT_TOKEN_COST / rate / 60
    after_minutes = (
        AFTER_TRAINING_SHARE * train["steps"] * train["local_batch_size"] * train["seq_len"] / rate / 60
    )
    return (
        f"SFT next: {tokens:,} tokens, ~{sft_minutes:.1f} min at the pretraining's {rate:,.0f} tokens/s; "
        f"then export, GGUFs, verify and eval ~{after_minutes:.1f} min: about "
        f"{sft_minutes + after_minutes:.1f} min left"
    )


def quant_types(root: Path) -> tuple[tuple[str, ...], str | None]:
    """The GGUF types to make from the export, and why K-quants are left out (None when they are not)."""
    config = read_json(root / "export" / "config.json")
    obstacle = k_quant_obstacle(config["dim"], config["ffn_hidden_dim"])
    return tuple(q for q in QUANT_TYPES if obstacle is None or q not in K_QUANTS), obstacle


def model_stages(root: Path, quants: tuple[str, ...], documents: Path | None = None) -> list[Stage]:
    """After the export: one GGUF per quant type, verify them, then `chakor eval` (gates, bpb, QA).

    `documents`: the document index the held-out questions are also asked with (DOCUMENTS search).
    """
    export, shards = root / "export", root / "shards"
    ggufs = [root / f"model-{quant}.gguf" for quant in quants]
    steps = [
        Stage(
            f"convert-{quant}",
            ("convert", str(export), "--outtype", quant, "--outfile", str(gguf)),
            (export,),
            gguf,
        )
        for quant, gguf in zip(quants, ggufs, strict=True)
    ]
    report = root / "verify.json"
    steps.append(
        Stage(
            "verify",
            (
                "verify",
                *map(str, ggufs),
                "--export",
                str(export),
                "--data",
                str(shards),
                "--report",
                str(report),
            ),
            (*ggufs, shards),
            report,
            fatal=False,
        )
    )
    heldout = root / "sft-data" / "heldout.json"  # the held-out questions, when the SFT data stage wrote them
    qa: tuple[str, ...] = ("--qa", str(heldout)) if heldout.exists() else ()
    if qa and documents is not None:
        qa += ("--documents", str(documents))
    runs: tuple[str, ...] = ("--run", str(root / "pretrain"), "--run", str(root / "sft"))
    runs += ("--tasks", "heldout=val", "--limit", "200")  # no Hub here: a cloze task over the val split
    steps.append(
        Stage(
            "eval",
            ("eval", str(export), *map(str, ggufs), "--data", str(shards), *qa, *runs, "--out", str(root)),
            (*ggufs, shards, *([heldout] if qa else [])),
            root / "eval.json",
            fatal=False,  # a failed gate is reported; the smallest GGUF that passed is served
        )
    )
    return steps


def fingerprint(stage: Stage) -> str:
    """Hash of the stage's command and the contents of everything it reads."""
    digest = hashlib.sha256(json.dumps(stage.args).encode())
    for path in stage.inputs:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(path.parent)).encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def is_up_to_date(stage: Stage, stamps: Path, key: str) -> bool:
    """The stage's output exists and was made from inputs with fingerprint `key`."""
    stamp = stamps / f"{stage.name}.sha256"
    return stage.output.exists() and stamp.exists() and stamp.read_text() == key


def run_stage(stage: Stage, stamps: Path) -> float | None:
    """Run the stage unless its output exists with an unchanged fingerprint; seconds taken or None if skipped."""
    stamp = stamps / f"{stage.name}.sha256"
    key = fingerprint(stage)
    if is_up_to_date(stage, stamps, key):
        console.print(f"[dim]↷ {stage.name}: up to date[/]")
        return None
    console.rule(f"[bold]{stage.name}")
    remove(stage.output)  # a stale or half-finished output from an interrupted run
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "chakor", *stage.args], cwd=REPO_ROOT)
    if result.returncode != 0 and (stage.fatal or not stage.output.exists()):
        console.print(f"[red]stage {stage.name} failed (exit {result.returncode})[/]")
        raise typer.Exit(result.returncode)
    if result.returncode != 0:
        console.print(f"[yellow]stage {stage.name} reported failed checks: see {stage.output}[/]")
    stamps.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    return time.monotonic() - started


def served_quant(root: Path, quants: tuple[str, ...]) -> str:
    """The smallest GGUF that passed its eval gate; f32 (the exact model) when none did or there is no report."""
    report = read_report(root / EVAL_JSON)
    if report is None:
        console.print("[yellow]no eval report: serving the f32 GGUF[/]")
        return "f32"
    if report.serve in quants:
        return report.serve
    console.print("[yellow]no quantized GGUF passed its eval gate: serving the f32 GGUF[/]")
    return "f32"


def write_manifest(root: Path, seconds: dict[str, float | None], quants: tuple[str, ...]) -> dict:
    """runs/quickstart/manifest.json: where each artefact is (paths relative to the repo root when inside it)."""
    manifest = {
        "tokenizer_json": repo_relative(root / "tokenizer" / "tokenizer.json"),
        "export_dir": repo_relative(root / "export"),
        "gguf": {q: repo_relative(root / f"model-{q}.gguf") for q in quants},
        "verify_report": repo_relative(root / "verify.json"),
        "eval_report": repo_relative(root / "eval.json"),
        "served": served_quant(root, quants),
        "stage_seconds": seconds,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def last_metric(run_dir: Path, key: str) -> float:
    """The last value of `key` in a run's metrics.jsonl."""
    values = [
        r[key] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if key in r
    ]
    return float(values[-1])


def add_eval_rows(facts: Table, report: EvalReport) -> None:
    """The eval's numbers in the summary: bits per byte, QA F1, each quant's KLD and verdict."""
    val = report.validation
    facts.add_row(
        "val bits per byte", f"{val.bits_per_byte:.4f} (loss {val.loss:.3f} over {val.tokens:,} tokens)"
    )
    for mode in report.qa.modes.values():
        f1 = "-" if mode.mean_f1 is None else f"{mode.mean_f1:.3f}"
        facts.add_row(f"held-out QA F1, search {mode.mode}", f"{f1} ({mode.asked} questions)")
    for row in report.quantization.rows:
        if row.kld is not None and row.gate is not None:
            facts.add_row(
                f"eval {row.quant}",
                f"{row.verdict}: mean KLD {row.kld.mean_kld:.3g} (gate {row.gate.max_mean_kld:g}), "
                f"same top {row.kld.same_top:.2%}",
            )
    if report.quantization.k_quants_skipped:
        facts.add_row("K-quants", "not made: " + report.quantization.k_quants_skipped)
    for task in report.benchmarks.tasks if report.benchmarks else ():
        facts.add_row(
            f"benchmark {task.task}",
            f"{task.accuracy if task.accuracy_norm is None else task.accuracy_norm:.1%} (chance {task.chance:.0%})",
        )


def print_summary(root: Path, seconds: dict[str, float | None], settings: Settings, served: str) -> None:
    """Stage timings, then the numbers that say what was trained and whether llama.cpp reproduces it."""
    timings = Table("stage", "seconds", title="Quickstart stages")
    for name, took in seconds.items():
        timings.add_row(name, "cached" if took is None else f"{took:.1f}")
    console.print(timings)

    splits = read_json(root / "shards" / "manifest.json")["splits"]
    config = ModelConfig.from_dict(read_json(root / "export" / "config.json"))
    facts = Table("", "", title="Model", show_header=False)
    facts.add_row("training tokens", f"{splits['train']['tokens']:,} train / {splits['val']['tokens']:,} val")
    facts.add_row("parameters", f"{config.num_params():,}")
    for run in ("pretrain", "sft"):
        loss, val = last_metric(root / run, "loss"), last_metric(root / run, "val_loss")
        facts.add_row(f"{run} loss", f"train {loss:.3f} / val {val:.3f} (perplexity {math.exp(val):.1f})")
    report = root / "verify.json"
    if report.exists():
        for gguf in read_json(report)["reports"]:
            checks = ", ".join(f"{c['name']} {VERDICTS[c['passed']]}" for c in gguf["checks"])
            facts.add_row(f"verify {gguf['file_type']}", checks)
    evaluation = read_report(root / EVAL_JSON)
    if evaluation is not None:
        add_eval_rows(facts, evaluation)
    facts.add_row("served GGUF", served)
    facts.add_row("chat app", settings.frontend_url)
    facts.add_row("GraphQL API", settings.graphql_url)
    console.print(facts)


def quickstart(
    skip_verify: bool = typer.Option(False, help="Skip the llama.cpp verification and eval stages."),
) -> None:
    """Train a tiny model on this machine's Python docs and code, then convert, verify and evaluate it."""
    settings = settings_or_exit()
    root = quickstart_dir(settings)
    seconds: dict[str, float | None] = {}
    stamps = root / ".stamps"
    pipeline = stages(root)
    sft = next(stage for stage in pipeline if stage.name == "sft")
    for stage in pipeline:
        if stage.name in ("pretrain", "sft") and not is_up_to_date(stage, stamps, fingerprint(stage)):
            forecast = pretrain_forecast(sft) if stage.name == "pretrain" else sft_forecast(root, sft)
            if forecast:
                console.print(f"[cyan]{forecast}[/]")
        seconds[stage.name] = run_stage(stage, stamps)
    quants, k_quant_obstacle = quant_types(root)
    if k_quant_obstacle:
        console.print(f"[dim]↷ K-quants: {k_quant_obstacle}[/]")
    index = settings.docs_index_dir
    for stage in model_stages(root, quants, index if (index / "collections.json").is_file() else None):
        if skip_verify and stage.name in ("verify", "eval"):
            continue
        seconds[stage.name] = run_stage(stage, stamps)
    manifest = write_manifest(root, seconds, quants)
    print_summary(root, seconds, settings, manifest["served"])
    serve_base_beside(settings, root, REPO_ROOT / manifest["gguf"][manifest["served"]], skip_verify)


QUICKSTART_MODEL = "quickstart"
BASE_MODEL = "quickstart-base"


def base_stages(root: Path, documents: Path | None) -> list[Stage]:
    """The pretrained model beside the fine-tuned one, under `root/base`: its export, an f32 GGUF (1.3M
    parameters: 5 MB, nothing to gain from quantizing) and its eval card with the same held-out questions,
    so the two cards show what SFT changed."""
    base, shards, heldout = root / "base", root / "shards", root / "sft-data" / "heldout.json"
    export, gguf = base / "export", base / "model-f32.gguf"
    qa: tuple[str, ...] = ("--qa", str(heldout)) if heldout.exists() else ()
    if qa and documents is not None:
        qa += ("--documents", str(documents))
    evaluate = ("eval", str(export), str(gguf), "--data", str(shards), *qa, "--no-bench", "--out", str(base))
    return [
        Stage(
            "base-export",
            ("export", str(root / "pretrain"), "--out", str(export)),
            (root / "pretrain",),
            export,
        ),
        Stage(
            "base-convert",
            ("convert", str(export), "--outtype", "f32", "--outfile", str(gguf)),
            (export,),
            gguf,
        ),
        Stage(
            "base-eval", evaluate, (gguf, shards, *([heldout] if qa else [])), base / EVAL_JSON, fatal=False
        ),
    ]


def serve_base_beside(settings: Settings, root: Path, served: Path, skip_verify: bool) -> None:
    """Register the served fine-tuned GGUF (`quickstart`, the default) and the pretrained base
    (`quickstart-base`, kind base) so `chakor up` serves both side by side; a base that cannot be made is
    reported and left out, never fatal (the chat model is what the quickstart is for)."""
    index = settings.docs_index_dir
    try:
        for stage in base_stages(root, index if (index / "collections.json").is_file() else None):
            if not (skip_verify and stage.name == "base-eval"):
                run_stage(stage, root / ".stamps")
    except typer.Exit:
        console.print("[yellow]the pretrained base model was not made: only the fine-tuned one is served[/]")
    tokenizer = root / "tokenizer"
    register_model(
        settings, QUICKSTART_MODEL, served, tokenizer, "chat", "fine-tuned (SFT): answers from its sources"
    )
    base = root / "base" / "model-f32.gguf"
    if base.is_file():
        register_model(
            settings, BASE_MODEL, base, tokenizer, "base", "pretrained only: what SFT started from"
        )


def register_model(
    settings: Settings, name: str, gguf: Path, tokenizer: Path, kind: Kind, description: str
) -> None:
    """Register `gguf` as `name` (the default when it is the chat model), again when that name holds
    another file or an older version of this one; a GGUF the registry refuses is reported, not fatal."""
    path = registry_path(settings.var_dir)
    try:
        registry = load_registry(path)
        current = registry.get(name)
        if (
            current is not None
            and current.gguf == str(gguf.resolve())
            and current.sha256 == sha256_file(gguf)
        ):
            return
        if current is not None:
            save_registry(path, registry.without(name))
        model = add_model(settings, name, gguf, tokenizer, kind, description, make_default=kind == "chat")
    except RegistryError as exc:
        console.print(f"[yellow]{name} not registered: {exc}[/]")
        return
    console.print(f"registered {model.name} ({model.kind}) for `chakor up` on port {model.port}")


def register(app: typer.Typer) -> None:
    app.command()(quickstart)
