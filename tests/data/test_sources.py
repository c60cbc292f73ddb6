"""Source specs beyond loose text files: parquet, compressed JSONL, Hugging Face dataset folders, fsspec URLs.

Every test makes its own data and checks the exact documents (or conversations) kept, or the exact
one-line error a bad source gives.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import zstandard
from typer.testing import CliRunner

from tests.data.corpus import PARQUET_DOCS, good_doc
from trainer.data.cli import register
from trainer.data.prepare import PrepareConfig, iter_documents, prepare
from trainer.data.sft import build_sft
from trainer.data.sources import ReadStats, SourceError, parse_source, parse_spec, read_source

runner = CliRunner()


def chakor() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


DOCS = [good_doc(300 + i) for i in range(4)]


def texts(spec: str, **caps: Any) -> tuple[list[str], ReadStats]:
    stats = ReadStats()
    return [doc.text for doc in read_source(parse_source(spec), 0, stats, **caps)], stats


def jsonl_bytes(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def write_dataset_folder(root: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    """A Hugging Face dataset folder as the Hub lays one out: `data/{split}-00000-of-00001.parquet`."""
    (root / "data").mkdir(parents=True)
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def test_parse_spec_contract() -> None:
    source = parse_spec("hf:org/name?config=en&split=validation&field=body&revision=v1&limit=5")
    assert (source.format, source.location, source.config, source.split) == (
        "hf",
        "org/name",
        "en",
        "validation",
    )
    assert (source.field, source.revision, source.limit) == ("body", "v1", 5)
    assert parse_spec("hf:org/name").split == "train"
    source = parse_spec("s3://bucket/prefix/*.parquet:text")
    assert (source.format, source.location, source.field) == (
        "parquet",
        "s3://bucket/prefix/*.parquet",
        "text",
    )
    source = parse_spec("dump.jsonl.zst:body?limit=3")
    assert (source.format, source.location, source.field, source.limit) == (
        "jsonl",
        "dump.jsonl.zst",
        "body",
        3,
    )
    source = parse_spec("chats.parquet?prompt=q&response=a")
    assert (source.prompt, source.response, source.field) == ("q", "a", None)
    assert parse_spec("data/part-?.parquet").location == "data/part-?.parquet"  # a glob's ? is no option
    assert parse_spec("notes/").format == "text"
    for spec, message in [
        ("hf:org/name?splt=train", r"source 'hf:org/name\?splt=train': unknown option 'splt'"),
        ("hf:org/name?limit=0", "limit must be a positive whole number, got '0'"),
        ("a.parquet?config=x", "unknown option 'config'"),
        ("a.parquet?prompt=q", "give prompt= and response= together"),
        ("a.parquet:text?field=body", "give the field once"),
        ("texts/*.txt", "a glob must name .parquet or .jsonl"),
    ]:
        with pytest.raises(SourceError, match=message):
            parse_spec(spec)


def test_parquet_glob_reads_every_row_of_the_needed_column(parquet_glob: str) -> None:
    read, stats = texts(parquet_glob)
    assert read == PARQUET_DOCS  # files in name order; part-0's row groups of 1 row cross every batch
    assert (stats.files, stats.documents) == (2, 5)


def test_prepare_reads_a_parquet_glob_one_task_per_file(parquet_glob: str, tmp_path: Path) -> None:
    report = prepare(PrepareConfig(sources=[parquet_glob], out_dir=tmp_path / "out"))
    info = report["sources"][parquet_glob]
    assert (info["files"], info["read_docs"], info["kept_docs"]) == (2, 5, 5)
    docs = list(iter_documents(tmp_path / "out"))
    assert sorted(d["text"] for d in docs) == sorted(PARQUET_DOCS)
    # one read task per file: ids carry the part (the file) and the row within it
    assert sorted(d["id"] for d in docs) == [
        "0000-000000-000000000000",
        "0000-000000-000000000001",
        "0000-000000-000000000002",
        "0000-000001-000000000000",
        "0000-000001-000000000001",
    ]


def test_compressed_jsonl(tmp_path: Path) -> None:
    lines = [json.dumps({"body": DOCS[0]}), "{broken", json.dumps({"body": DOCS[1]})]
    (tmp_path / "dump.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(lines)))
    (tmp_path / "dump.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(lines[::-1])))
    (tmp_path / "dump.jsonl.bz2").write_bytes(bz2.compress(jsonl_bytes(lines[:1])))
    read, stats = texts(f"{tmp_path}/dump.jsonl.gz:body")
    assert read == DOCS[:2]
    assert stats.malformed_lines == {f"{tmp_path}/dump.jsonl.gz": [2]}
    assert texts(f"{tmp_path}/dump.jsonl.zst:body")[0] == [DOCS[1], DOCS[0]]
    assert texts(f"{tmp_path}/dump.jsonl.bz2:body")[0] == DOCS[:1]
    assert texts(f"{tmp_path}/dump.jsonl.*:body")[0] == [DOCS[0], DOCS[0], DOCS[1], DOCS[1], DOCS[0]]


def test_hugging_face_dataset_folder(tmp_path: Path) -> None:
    folder = write_dataset_folder(
        tmp_path / "ds",
        {
            "train": [{"body": DOCS[0], "lang": "en"}, {"body": DOCS[1], "lang": "en"}],
            "validation": [{"body": DOCS[2], "lang": "en"}, {"body": DOCS[3], "lang": "en"}],
        },
    )
    assert texts(f"hf:{folder}?field=body")[0] == DOCS[:2]  # split defaults to train
    assert texts(f"hf:{folder}?split=validation&field=body")[0] == DOCS[2:]
    assert texts(f"hf:{folder}?split=validation&field=body&limit=1")[0] == DOCS[2:3]


@pytest.fixture
def memory_bucket() -> Iterator[str]:
    """An S3-style bucket on fsspec's in-process `memory://` filesystem (the local executor, one worker,
    runs the read task in this process)."""
    fs = fsspec.filesystem("memory")
    for i, part in enumerate(([DOCS[0], DOCS[1]], [DOCS[2]])):
        with fs.open(f"memory://bucket/corpus/part-{i}.parquet", "wb") as handle:
            pq.write_table(pa.table({"text": part}), handle)
    try:
        yield "memory://bucket/corpus"
    finally:
        fs.rm("memory://bucket", recursive=True)


def test_fsspec_url_source(memory_bucket: str, tmp_path: Path) -> None:
    spec = f"{memory_bucket}/*.parquet"
    report = prepare(PrepareConfig(sources=[spec], out_dir=tmp_path / "out"))
    assert report["sources"][spec]["read_docs"] == 3
    assert sorted(d["text"] for d in iter_documents(tmp_path / "out")) == sorted(DOCS[:3])


def test_limits_per_source_with_weights(parquet_glob: str, tmp_path: Path) -> None:
    lines = [json.dumps({"text": doc}) for doc in DOCS]
    (tmp_path / "dump.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(lines)))
    gz = f"{tmp_path}/dump.jsonl.gz"
    out = tmp_path / "out"
    args = ["data", "prepare", "--source", parquet_glob, "--source", gz, "--out", str(out)]
    result = runner.invoke(chakor(), [*args, "--limit", f"{parquet_glob}=2", "--weight", f"{parquet_glob}=3"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert {spec: (s["read_docs"], s["weight"]) for spec, s in report["sources"].items()} == {
        parquet_glob: (2, 3.0),
        gz: (4, 1.0),
    }
    kept = sorted(d["text"] for d in iter_documents(out))
    assert kept == sorted(PARQUET_DOCS[:2] + DOCS)  # a capped glob reads its files in order, in one task
    result = runner.invoke(chakor(), [*args, "--max-documents", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(d["text"] for d in iter_documents(out)) == sorted([PARQUET_DOCS[0], DOCS[0]])
    result = runner.invoke(chakor(), [*args, "--limit", "nope=1"])
    assert result.exit_code == 2 and "--limit names 'nope', which is not a --source" in result.output


def one_line_error(spec: str, tmp_path: Path) -> str:
    with pytest.raises(SourceError) as caught:
        prepare(PrepareConfig(sources=[spec], out_dir=tmp_path / "out"))
    message = str(caught.value)
    assert "\n" not in message and not (tmp_path / "out").exists()
    return message


def test_wrong_field_is_one_line(parquet_glob: str, tmp_path: Path) -> None:
    spec = parquet_glob.replace(":body", ":txt")
    file = spec.removesuffix("*.parquet:txt") + "part-0.parquet"
    assert (
        one_line_error(spec, tmp_path)
        == f"source {spec!r}: no column 'txt' in {file} (columns: id, body, url)"
    )


def test_empty_glob_is_one_line(tmp_path: Path) -> None:
    spec = f"{tmp_path}/none-*.parquet:text"
    assert one_line_error(spec, tmp_path) == f"source {spec!r}: no files match {tmp_path}/none-*.parquet"


def test_corrupt_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    spec = f"{tmp_path}/bad.parquet"
    assert one_line_error(spec, tmp_path).startswith(
        f"source {spec!r}: cannot read {spec} as parquet: Parquet magic bytes not found"
    )
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"text": "x"}\n')[:-8] + b"garbage!")
    spec = f"{tmp_path}/bad.jsonl.gz"
    assert one_line_error(spec, tmp_path).startswith(f"source {spec!r}: cannot read {spec}: ")


def test_missing_split_is_one_line(tmp_path: Path) -> None:
    folder = write_dataset_folder(tmp_path / "ds", {"train": [{"text": DOCS[0]}]})
    spec = f"hf:{folder}?split=test"
    assert one_line_error(spec, tmp_path) == f"source {spec!r}: Bad split: test. Available splits: ['train']"


def test_hub_id_without_network_is_one_line(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 stands for a machine without network (the same ConnectionError, without the
    retries a real DNS failure waits through)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    spec = "hf:someorg/some-dataset?field=text"
    command = [
        sys.executable,
        "-m",
        "chakor",
        "data",
        "prepare",
        "--source",
        spec,
        "--out",
        str(tmp_path / "o"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"error: source {spec!r}: cannot reach the Hugging Face Hub for 'someorg/some-dataset' (a Hub id "
        "needs the network when it is read; no local folder has that name)"
    )
    assert not (tmp_path / "o").exists()


def good_chat(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"answer {i}."}]


def sft(spec: str, tmp_path: Path) -> tuple[dict[str, Any], list[list[dict[str, str]]]]:
    report = build_sft(spec, tmp_path / "sft")
    lines = (tmp_path / "sft" / "sft.jsonl").read_text().splitlines()
    return report, [json.loads(line)["messages"] for line in lines]


def test_sft_messages_column_from_parquet(tmp_path: Path) -> None:
    system = [{"role": "system", "content": "Be brief."}]
    rows = [
        {"messages": good_chat(0)},
        {"messages": [*good_chat(1), {"role": "assistant", "content": "and more."}]},
        {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]},
        {"messages": system + good_chat(2)},
        {"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chats.parquet", row_group_size=2)
    report, conversations = sft(f"{tmp_path}/chats.parquet", tmp_path)
    assert conversations == [good_chat(0), system + good_chat(2)]
    assert report["skipped_reasons"] == {"empty_turn": 1, "not_alternating": 2}
    assert report["skipped_lines"] == {"not_alternating": [2, 5], "empty_turn": [3]}


def test_sft_sharegpt_conversations_from_jsonl_gz(tmp_path: Path) -> None:
    def turn(who: str, text: str) -> dict[str, str]:
        return {"from": who, "value": text}

    lines = [
        json.dumps({"conversations": [turn("system", "S."), turn("human", "q1"), turn("gpt", "a1")]}),
        json.dumps({"conversations": [turn("human", "q2"), turn("bot", "a2")]}),
        json.dumps(
            {
                "conversations": [
                    turn("human", "q3"),
                    turn("gpt", "a3"),
                    turn("human", "q4"),
                    turn("gpt", "a4"),
                ]
            }
        ),
    ]
    (tmp_path / "share.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(lines)))
    report, conversations = sft(f"{tmp_path}/share.jsonl.gz", tmp_path)
    assert conversations == [
        [
            {"role": "system", "content": "S."},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
        ],
        [
            {"role": "user", "content": "q3"},
            {"role": "assistant", "content": "a3"},
            {"role": "user", "content": "q4"},
            {"role": "assistant", "content": "a4"},
        ],
    ]
    assert report["skipped_lines"] == {"unknown_role": [2]}


def test_sft_prompt_response_columns_from_a_dataset_folder(tmp_path: Path) -> None:
    folder = write_dataset_folder(
        tmp_path / "ds",
        {"train": [{"q": "2+2?", "a": "4."}, {"q": "empty?", "a": ""}, {"q": "3+3?", "a": "6."}]},
    )
    report, conversations = sft(f"hf:{folder}?prompt=q&response=a", tmp_path)
    assert conversations == [
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4."}],
        [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6."}],
    ]
    assert report["skipped_lines"] == {"empty_turn": [2]}
    with pytest.raises(SourceError, match=r"no column 'question' or 'a' in .* \(columns: a, q\)"):
        build_sft(f"hf:{folder}?prompt=question&response=a", tmp_path / "other")


def test_sft_cli_takes_a_spec(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([{"messages": good_chat(7)}]), tmp_path / "c.parquet")
    result = runner.invoke(
        chakor(), ["data", "sft", "--source", f"{tmp_path}/c.parquet", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 1 conversations (2 messages), skipped 0" in result.output
    result = runner.invoke(
        chakor(), ["data", "sft", "--source", f"{tmp_path}/c.parquet:chat", "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 2
    assert (
        f"error: source '{tmp_path}/c.parquet:chat': no column 'chat' in {tmp_path}/c.parquet (columns: messages)"
        in " ".join(result.output.split())
    )
