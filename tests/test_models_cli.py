"""`chakor models add|list|remove` and the registry file: what `add` checks and refuses, and how it is stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chakor.cli import build_components
from chakor.models import add_model
from common import REPO_ROOT
from common.model_registry import RegistryError, load_registry, registry_path, save_registry
from common.settings import Settings, load_settings
from tests.support.tiny_model import TinyModel, tiny_corpus


def chakor(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAKOR_VAR_DIR": str(var_dir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "chakor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer whose vocabulary is not the tiny model's (fewer tokens, other merges)."""
    from trainer.tokenizer.train import train_tokenizer

    return train_tokenizer(tiny_corpus()[-40:], 300, tmp_path_factory.mktemp("other") / "tokenizer")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(var_dir=tmp_path / "var", llama_port=8090)


def test_add_records_the_gguf_and_refuses_what_does_not_fit(
    settings: Settings, tiny_model: TinyModel, other_tokenizer: Path, tmp_path: Path
) -> None:
    gguf = tiny_model.gguf_path
    first = add_model(settings, "tiny", gguf, tiny_model.tokenizer_dir, description="random init")
    base = add_model(settings, "tiny-base", gguf, tiny_model.tokenizer_dir, kind="base", make_default=True)
    registry = load_registry(registry_path(settings.var_dir))
    assert registry.default == "tiny-base" and registry.names == ["tiny", "tiny-base"]
    assert (first.port, base.port) == (8090, 8091)
    assert first.context_length == 2048 and first.kind == "chat" and base.kind == "base"
    assert first.tokenizer == str(tiny_model.tokenizer_dir) and first.gguf == str(gguf.resolve())
    assert len(first.sha256) == 64
    before = registry_path(settings.var_dir).read_text()

    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("not a model")
    refusals = [
        (
            ("tiny", gguf, tiny_model.tokenizer_dir),
            "a model named 'tiny' is registered already (remove it first)",
        ),
        (("bad name", gguf, tiny_model.tokenizer_dir), "model name 'bad name' must be 1-64 letters"),
        (("missing", tmp_path / "nope.gguf", None), "no such GGUF file"),
        (("junk", not_gguf, None), "not a readable GGUF"),
        (
            ("mixed", gguf, other_tokenizer),
            f"tokenizer {other_tokenizer} does not match the GGUF model-f32.gguf",
        ),
        (("nofolder", gguf, tmp_path), "not a tokenizer folder"),
    ]
    for args, message in refusals:
        with pytest.raises(RegistryError) as refused:
            add_model(settings, *args)
        assert message in str(refused.value), str(refused.value)
    assert registry_path(settings.var_dir).read_text() == before  # nothing changed

    after = load_registry(registry_path(settings.var_dir)).without("tiny")
    save_registry(registry_path(settings.var_dir), after)
    again = add_model(settings, "tiny2", gguf, tiny_model.tokenizer_dir)
    assert again.port == 8090  # the port tiny gave back; tiny-base keeps 8091


def test_a_vocabulary_with_other_ids_is_refused(
    settings: Settings, tiny_model: TinyModel, tmp_path: Path
) -> None:
    """Same size, two tokens swapped: the ids the GGUF would read differ from the ones rendered."""
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (swapped / name).write_bytes((tiny_model.tokenizer_dir / name).read_bytes())
    data = json.loads((swapped / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.__getitem__)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (swapped / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(
        RegistryError, match=r"does not match the GGUF model-f32.gguf: 2 token ids differ \(first: 300\)"
    ):
        add_model(settings, "swapped", tiny_model.gguf_path, swapped)


def test_a_malformed_registry_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text('{"models": [{"name": "x"}]}')
    with pytest.raises(RegistryError, match="malformed model registry"):
        load_registry(path)
    assert load_registry(tmp_path / "absent.json").models == ()


def test_the_cli_adds_lists_removes_and_exits_2_on_a_refusal(tiny_model: TinyModel, tmp_path: Path) -> None:
    var = tmp_path / "var"
    added = chakor(var, "models", "add", "tiny", str(tiny_model.gguf_path), "--kind", "base")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "registered tiny (base, context 2048) on port 8080" in added.stdout
    refused = chakor(var, "models", "add", "tiny", str(tiny_model.gguf_path))
    assert refused.returncode == 2
    assert refused.stdout.strip() == "error: a model named 'tiny' is registered already (remove it first)"
    listed = chakor(var, "models", "list")
    assert listed.returncode == 0 and "tiny*" in listed.stdout and "base" in listed.stdout
    removed = chakor(var, "models", "remove", "tiny")
    assert removed.returncode == 0 and load_registry(registry_path(var)).models == ()


def test_up_starts_one_llama_server_per_registered_model(settings: Settings, tiny_model: TinyModel) -> None:
    add_model(settings, "tiny", tiny_model.gguf_path, tiny_model.tokenizer_dir)
    add_model(settings, "tiny-base", tiny_model.gguf_path, tiny_model.tokenizer_dir, kind="base")
    registry = load_registry(registry_path(settings.var_dir))
    components = build_components(settings, tiny_model.gguf_path, frontend=False, registry=registry)
    llamas = [(c.name, c.port) for c in components if c.name.startswith("llama-server")]
    assert llamas == [("llama-server-tiny", 8090), ("llama-server-tiny-base", 8091)]
    argv = components[[c.name for c in components].index("llama-server-tiny-base")].make().argv
    assert argv[argv.index("--port") + 1] == "8091" and argv[argv.index("--model") + 1] == str(
        tiny_model.gguf_path
    )
    alone = build_components(settings, tiny_model.gguf_path, frontend=False)  # no registry: as before
    assert [(c.name, c.port) for c in alone if c.name.startswith("llama")] == [
        ("llama-server", settings.llama_port)
    ]
