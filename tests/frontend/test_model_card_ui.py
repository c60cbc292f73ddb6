"""The admin dashboard shows the model card from `chakor eval`: the same numbers as eval.json and the API."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import Stack, log_in
from tests.support.tiny_eval import tiny_model_eval
from tests.support.tiny_model import TinyModel

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_admin_sees_the_eval_numbers(page: Page, stack: Stack, admin: str, tiny_model: TinyModel) -> None:
    report = tiny_model_eval(tiny_model)
    f16 = report["quantization"]["rows"][1]
    log_in(page, admin)
    page.goto("/admin")
    card = page.locator("#model-evaluation")
    expect(card).to_contain_text(f"Bits per byte (validation){report['validation']['bits_per_byte']:.4f}")
    expect(card).to_contain_text(f"Held-out QA F1 (no search){report['qa']['modes']['off']['mean_f1']:.3f}")
    expect(card).to_contain_text("Served quantf32")
    expect(card).to_contain_text("Smallest passing quantf16")
    expect(card).to_contain_text(f"KLD scored tokens{report['quantization']['scored_tokens']:,}")
    rows = page.locator("#quant-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text(f"f16{f16['size_bytes'] / 1e6:.2f} MB{f16['mean_kld']:.3g}")
    expect(rows.nth(1)).to_contain_text("0.0001pass")
    (task,) = report["benchmarks"]["tasks"]
    expect(card).to_contain_text(f"CORE (1 tasks){report['benchmarks']['core']:.4f}")
    benchmark = page.locator("#benchmark-table tbody tr")
    expect(benchmark).to_have_count(1)
    f32_choices = task["ggufs"][0]
    expect(benchmark.first).to_contain_text(
        f"heldout{task['n']}{task['accuracy']:.1%}{task['accuracy_norm']:.1%}25%{task['centered']:+.3f}"
        f"f32 {f32_choices['accuracy']:.1%} / {f32_choices['agreement']:.1%}"
    )
    plot = page.get_by_role("img", name="eval-kld.png")
    expect(plot).to_be_visible()
    query = "query { model { evaluation { plots { name dataUri } } } }"
    plots = stack.gql(query, token=stack.token(admin))["model"]["evaluation"]["plots"]
    [uri] = [p["dataUri"] for p in plots if p["name"] == "eval-kld.png"]
    assert plot.get_attribute("src") == uri
    png = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # IHDR
    assert plot.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [width, height]  # it decoded
