"""`chakor convert`, `chakor verify` and `chakor inspect` (also `python -m converter`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from common.cli import FAILED, console, fail, settings_or_exit, user_errors
from common.hashing import sha256_file
from converter.errors import ConversionError

# A missing or malformed export, GGUF or validation text: one red line and exit status 2.
conversion_errors = user_errors(ConversionError)


@conversion_errors
def convert_command(
    export_dir: Path = typer.Argument(..., help="export directory (chakor export)"),
    outtype: str = typer.Option("f16", help="f32, f16, bf16, q8_0, q4_k_m, q5_k_m or q6_k"),
    outfile: Path = typer.Option(None, help="output GGUF (default: EXPORT_DIR/model-OUTTYPE.gguf)"),
    name: str = typer.Option(None, help="general.name (default: the export directory's name)"),
) -> None:
    """Convert an export directory to a llama.cpp GGUF."""
    from converter.convert import convert  # lazy: pulls in gguf and numpy; `chakor --help` stays fast

    server_bin = settings_or_exit().llama_server_bin  # K-quants: llama-quantize beside it
    path = convert(
        export_dir,
        outfile or export_dir / f"model-{outtype}.gguf",
        outtype,
        name=name,
        progress=True,
        server_bin=server_bin,
    )
    typer.echo(str(path))


@conversion_errors
def verify_command(
    ggufs: list[Path] = typer.Argument(..., help="GGUF file(s) converted from EXPORT"),
    export: Path = typer.Option(..., "--export", help="the export directory they were converted from"),
    report: Path = typer.Option(None, help="write the JSON report here"),
    val_text: Path = typer.Option(None, help="text file for perplexity"),
    data: Path = typer.Option(None, help="data directory whose val split is the perplexity text"),
    max_val_tokens: int = typer.Option(65536, help="tokens of the val split to use"),
    max_positions: int = typer.Option(16, help="next-token positions compared per prompt"),
    ppl_ctx: int = typer.Option(256, help="perplexity window (capped at the model's context)"),
    ppl_chunks: int = typer.Option(8, help="perplexity windows"),
) -> None:
    """Check that llama.cpp reproduces the exported model; exit 1 when a check fails."""
    # lazy, each of the four: they pull in torch, gguf and numpy; `chakor --help` stays fast
    from converter.reference import Reference
    from converter.render import checks_table, perplexity_table  # lazy: the same
    from converter.valdata import validation_text  # lazy: the same
    from converter.verify import verify, write_report  # lazy: the same

    settings = settings_or_exit()
    reference = Reference(export)
    text = None
    if val_text is not None:
        text = val_text.read_text(encoding="utf-8")
    elif data is not None:
        digest = sha256_file(export / "tokenizer.json")
        text = validation_text(data, reference.tokenizer, digest, max_val_tokens)
    reports = [
        verify(
            path,
            export,
            val_text=text,
            reference=reference,
            max_positions=max_positions,
            ppl_ctx=ppl_ctx,
            ppl_chunks=ppl_chunks,
            llama_threads=settings.llama_threads,
            server_bin=settings.llama_server_bin,
        )
        for path in ggufs
    ]
    console.print(checks_table(reports))
    console.print(perplexity_table(reports))
    if report is not None:
        write_report(reports, report)
    if not all(r.passed for r in reports):
        fail("verification FAILED", FAILED)
    console.print("[green]all checks passed")


@conversion_errors
def inspect_command(
    gguf_file: Path = typer.Argument(..., help="GGUF file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (metadata preview and tensors)"),
) -> None:
    """Show a GGUF's metadata and tensor table."""
    from converter.gguf_info import read_gguf  # lazy: pulls in gguf and numpy; `chakor --help` stays fast
    from converter.render import metadata_table, tensors_table  # lazy: pulls in torch

    info = read_gguf(gguf_file)
    if as_json:
        tensors = [vars(t) for t in info.tensors]
        typer.echo(json.dumps({"metadata": info.preview(), "tensors": tensors}, ensure_ascii=False, indent=2))
        return
    console.print(metadata_table(info))
    console.print(tensors_table(info))


def register(app: typer.Typer) -> None:
    """Add `convert`, `verify` and `inspect` to `app`."""
    app.command("convert")(convert_command)
    app.command("verify")(verify_command)
    app.command("inspect")(inspect_command)


def main() -> None:
    """Entry point of `python -m converter`."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help="Chakor GGUF converter")
    register(app)
    app()
