"""A prepare killed mid-run resumes from the tasks datatrove marked complete and writes the same output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.data.corpus import good_doc
from trainer.data import steps
from trainer.data.prepare import PrepareConfig, prepare

FIFO_DOCS = [good_doc(seed) for seed in range(700, 703)]


def feed(fifo: Path) -> threading.Thread:
    """Write the FIFO source's JSONL once a reader opens it (until then that reader blocks)."""

    def write() -> None:
        with fifo.open("w") as handle:
            handle.writelines(f'{{"text": "{text}"}}\n' for text in FIFO_DOCS)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def wait_for(path: Path, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_killed_prepare_resumes_completed_tasks(
    tmp_path: Path, corpus_sources: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "stream.jsonl"  # the second source blocks its read task until the test feeds it
    os.mkfifo(fifo)
    sources = [corpus_sources[0], str(fifo)]
    out = tmp_path / "data"
    command = [str(Path(sys.executable).parent / "chakor"), "data", "prepare", "--out", str(out)]
    for source in sources:
        command += ["--source", source]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (works := list(tmp_path.glob(".data.work-*"))):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (work,) = works
        wait_for(work / "logs" / "read" / "completions" / "00000", process)  # source 0 read, source 1 blocked
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not out.exists()
    assert not (work / "logs" / "read" / "completions" / "00001").exists()

    read_calls: list[str] = []
    real_read_source = steps.read_source

    def recording_read_source(source, *args, **kwargs):  # type: ignore[no-untyped-def]
        read_calls.append(source.spec)
        return real_read_source(source, *args, **kwargs)

    monkeypatch.setattr(steps, "read_source", recording_read_source)
    feeder = feed(fifo)
    report = prepare(PrepareConfig(sources=sources, out_dir=out))
    feeder.join(10)
    assert read_calls == [str(fifo)]  # the completed read task was not redone
    assert not work.exists()

    fresh = tmp_path / "fresh"
    feeder = feed(fifo)
    assert prepare(PrepareConfig(sources=sources, out_dir=fresh)) == report
    feeder.join(10)
    assert read_calls == [str(fifo), corpus_sources[0], str(fifo)]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        p.name: p.read_bytes() for p in fresh.iterdir()
    }
    assert report["sources"][str(fifo)]["kept_docs"] == len(FIFO_DOCS)
