"""The perplexity filter: a reference model trained briefly on prose removes gibberish and boilerplate."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from tests.data.corpus import good_doc
from trainer.data.filters import FilterConfig
from trainer.data.perplexity import PerplexityScorer
from trainer.data.prepare import PrepareConfig, iter_documents, prepare

BOILERPLATE = [
    "Accept all cookies to continue browsing our website and read the privacy policy.",
    "Subscribe to our newsletter for exclusive deals, coupons and special offers today.",
    "Copyright all rights reserved. Terms of service apply to every registered user account.",
    "Click here to sign up now and get free shipping on your first order with us.",
    "Follow us on social media, share this page with friends and leave a comment below.",
    "Login or register to view prices, manage your wishlist and track recent purchases.",
]


def gibberish(seed: int) -> str:
    """Word-shaped nonsense with real stop words, so Gopher's quality rules let it through."""
    rng = random.Random(seed)
    words = []
    for i in range(90):
        words.append(
            rng.choice(["the", "and", "of", "to"])
            if i % 6 == 0
            else "".join(rng.choice("bcdfghjklmnpqrstvwxzaeiou") for _ in range(rng.randint(3, 8)))
        )
    return " ".join(words) + "."


def boilerplate(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.sample(BOILERPLATE, len(BOILERPLATE)))


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer model trained for a few seconds on the corpus' prose, exported as `chakor export` does."""
    import torch
    import torch.nn.functional as F

    from common.chat import load_tokenizer, plain_text_tokenizer
    from tests.support.tiny_model import model_config
    from trainer.export import export_state_dict
    from trainer.model import Transformer
    from trainer.tokenizer import train_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from more threads on a shared machine
    root = tmp_path_factory.mktemp("reference")
    texts = [good_doc(seed) for seed in range(300, 340)]
    tokenizer_dir = train_tokenizer(texts, vocab_size=320, out_dir=root / "tokenizer")
    tokenizer = plain_text_tokenizer(load_tokenizer(tokenizer_dir))
    ids = torch.tensor([i for enc in tokenizer.encode_batch(texts) for i in enc.ids])
    cfg = model_config(tokenizer_dir, dim=48, n_layers=2, n_heads=4, n_kv_heads=2)
    torch.manual_seed(0)
    model = Transformer(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        starts = torch.randint(0, ids.numel() - 65, (8,), generator=generator)
        batch = torch.stack([ids[s : s + 65] for s in starts])
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    return export_state_dict(
        model.state_dict(), cfg, tokenizer_dir, root / "export", lineage={"source": "test"}
    )


def test_gibberish_and_boilerplate_are_removed_prose_is_kept(reference_model: Path, tmp_path: Path) -> None:
    prose = [good_doc(seed) for seed in range(500, 506)]
    junk = [gibberish(seed) for seed in range(3)] + [boilerplate(seed) for seed in range(3)]
    scores = PerplexityScorer(reference_model).score(prose + junk)
    worst_prose, best_junk = max(scores[: len(prose)]), min(scores[len(prose) :])
    assert worst_prose < best_junk  # the model discriminates; the threshold goes in between
    threshold = math.sqrt(worst_prose * best_junk)

    src = tmp_path / "src"
    src.mkdir()
    for i, text in enumerate(prose + junk):
        (src / f"{i:02d}.txt").write_text(text)
    filters = FilterConfig(perplexity_model=reference_model, max_perplexity=threshold, perplexity_batch=4)
    report = prepare(PrepareConfig(sources=[str(src)], out_dir=tmp_path / "out", filters=filters))
    assert report["removed"]["perplexity"] == {"perplexity_above_max": len(junk)}
    assert sorted(doc["text"] for doc in iter_documents(tmp_path / "out")) == sorted(prose)
    assert report["filters"]["perplexity_model"] == str(reference_model.resolve())


def test_drop_worst_percent_removes_the_same_documents(reference_model: Path, tmp_path: Path) -> None:
    prose = [good_doc(seed) for seed in range(500, 506)]
    junk = [gibberish(seed) for seed in range(3)] + [boilerplate(seed) for seed in range(3)]
    src = tmp_path / "src"
    src.mkdir()
    for i, text in enumerate(prose + junk):
        (src / f"{i:02d}.txt").write_text(text)
    filters = FilterConfig(perplexity_model=reference_model, drop_worst=50.0)  # half the documents are junk
    report = prepare(PrepareConfig(sources=[str(src)], out_dir=tmp_path / "out", filters=filters, tasks=2))
    assert report["removed"]["perplexity"] == {"perplexity_above_max": len(junk)}
    assert sorted(doc["text"] for doc in iter_documents(tmp_path / "out")) == sorted(prose)
    assert report["filters"]["drop_worst"] == 50.0


def test_a_missing_reference_model_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text(good_doc(1))
    filters = FilterConfig(perplexity_model=tmp_path / "nope", max_perplexity=10.0)
    with pytest.raises(FileNotFoundError, match=r"no config\.json \(expected a `chakor export` folder\)"):
        prepare(PrepareConfig(sources=[str(tmp_path / "src")], out_dir=tmp_path / "out", filters=filters))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
