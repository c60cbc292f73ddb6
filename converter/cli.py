"""`chakor convert`, `chakor verify` and `chakor inspect` (also `python -m converter`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from converter.errors import ConversionError

_err = Console(stderr=True)


def _fail(exc: ConversionError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def convert_command(
    export_dir: Path = typer.Argument(..., help="export directory (chakor export)"),
    outtype: str = typer.Option("f16", help="f32, f16, bf16, q8_0, q4_k_m, q5_k_m or q6_k"),
    outfile: Path = typer.Option(None, help="output GGUF (default: EXPORT_DIR/model-OUTTYPE.gguf)"),
    name: str = typer.Option(None, help="general.name (default: the export directory's name)"),
) -> None:
    """Convert an export directory to a llama.cpp GGUF."""
    from converter.convert import convert

    try:
        path = convert(
            export_dir, outfile or export_dir / f"model-{outtype}.gguf", outtype, name=name, progress=True
        )
    except ConversionError as exc:
        raise _fail(exc) from None
    typer.echo(str(path))


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
    from common.hashing import sha256_file
    from converter.reference import Reference
    from converter.render import checks_table, perplexity_table
    from converter.valdata import validation_text
    from converter.verify import verify, write_report

    console = Console()
    try:
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
            )
            for path in ggufs
        ]
    except ConversionError as exc:
        raise _fail(exc) from None
    console.print(checks_table(reports))
    console.print(perplexity_table(reports))
    if report is not None:
        write_report(reports, report)
    passed = all(r.passed for r in reports)
    console.print("[green]all checks passed" if passed else "[red]verification FAILED")
    if not passed:
        raise typer.Exit(1)


def inspect_command(
    gguf_file: Path = typer.Argument(..., help="GGUF file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (metadata preview and tensors)"),
) -> None:
    """Show a GGUF's metadata and tensor table."""
    from converter.gguf_info import read_gguf
    from converter.render import metadata_table, tensors_table

    try:
        info = read_gguf(gguf_file)
    except ConversionError as exc:
        raise _fail(exc) from None
    if as_json:
        tensors = [vars(t) for t in info.tensors]
        typer.echo(json.dumps({"metadata": info.preview(), "tensors": tensors}, ensure_ascii=False, indent=2))
        return
    console = Console()
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
