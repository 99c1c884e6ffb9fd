"""The web page in a real headless Chromium: draw a digit, ask, see prediction and overlays;
upload a dark-on-light digit and see it inverted."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

from tests.browser import ARTIFACTS, browser_page, needs_chromium
from tests.serving.conftest import FEEDBACK_TOKEN

from .conftest import Registry, Server

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]


def dark_seven() -> bytes:
    """The Swagger example's MNIST 7, inverted (dark on white) and enlarged, as a PNG."""
    from PIL import Image

    from clearsight.inference.schemas import EXAMPLE_PNG_BASE64

    with Image.open(io.BytesIO(base64.b64decode(EXAMPLE_PNG_BASE64))) as seven:
        light = np.asarray(seven.convert("L"))
    dark = Image.fromarray(255 - light).resize((140, 140), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    dark.save(buffer, format="PNG")
    return buffer.getvalue()


def test_draw_a_digit_and_see_why(server: Server, registry: Registry) -> None:
    from playwright.sync_api import expect

    with browser_page(1280, 1000) as page:
        page.goto(f"{server.url}/ui/")
        expect(page.locator("#model")).to_contain_text("clearsight-cnn v")

        # A "1": one vertical stroke down the middle of the pad.
        box = page.locator("#pad").bounding_box()
        assert box is not None
        x = box["x"] + box["width"] / 2
        page.mouse.move(x, box["y"] + 40)
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(x + step * 0.5, box["y"] + 40 + step * 10)
        page.mouse.up()

        page.locator("#predict").click()
        expect(page.locator("#status")).to_contain_text("done in", timeout=60_000)
        expect(page.locator("#verdict")).to_have_text(re.compile(r"^\d \d+\.\d% confident"))
        expect(page.locator("#bars .bar")).to_have_count(10)
        notes = page.locator("#preprocessing li")  # what the service did to the image
        expect(notes).to_have_count(1)
        expect(notes.first).to_contain_text("fitted: 280x280")
        overlays = page.locator("#overlays img")
        expect(overlays).to_have_count(2)
        expect(page.locator("#overlays figcaption").first).to_contain_text("integrated_gradients")
        expect(page.locator("#activations img")).to_have_count(4, timeout=30_000)
        for image in overlays.all() + page.locator("#activations img").all():
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")
        page.screenshot(path=str(ARTIFACTS / "web_page.png"), full_page=True)

        # "The right answer was ...": the drawn digit goes to POST /feedback as a batch.
        page.locator("#truth").select_option("1")
        page.locator("#feedback-token").fill(FEEDBACK_TOKEN)
        page.locator("#send-feedback").click()
        expect(page.locator("#feedback-status")).to_contain_text("saved as feedback-")
        saved = page.locator("#feedback-status").inner_text().split("saved as ")[1].split()[0]
        assert registry.settings.incoming_dir is not None
        with np.load(registry.settings.incoming_dir / saved) as batch:
            assert batch["y_train"].tolist() == [1] and batch["x_train"].shape == (1, 28, 28)

        # An upload of a dark digit on white paper, as people write: inverted, and said so.
        page.locator("#upload").set_input_files(
            files=[{"name": "seven.png", "mimeType": "image/png", "buffer": dark_seven()}]
        )
        page.wait_for_function("() => ctx.getImageData(2, 2, 1, 1).data[0] > 200")
        page.locator("#predict").click()
        expect(notes).to_have_count(2, timeout=60_000)
        expect(notes.first).to_contain_text("inverted: dark digit on light background")
        expect(notes.nth(1)).to_contain_text("fitted: 280x280")

        # A refusal is shown as a message, not swallowed.
        page.evaluate(
            "call('/predict', {images: []}).catch("
            "e => setStatus('The service refused this input: ' + e.message, true))"
        )
        expect(page.locator("#status")).to_have_class("error")
        expect(page.locator("#status")).to_contain_text("refused")
