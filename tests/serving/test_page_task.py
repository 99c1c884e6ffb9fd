"""The web page follows the served task: the drawing pad for digit-like models, an upload for
any other, class names in the answer. The page runs in headless Chromium with the service's
answers stubbed (``page.route``), so no server is started and the test takes seconds."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np

from clearsight.task import DIGITS, ImageTask
from serving.routes import UI_DIR
from tests.browser import browser_page, needs_chromium

pytestmark = needs_chromium

BASE = "http://127.0.0.1:9"
SHAPES = ImageTask(32, 32, 3, ("circle", "square", "triangle"), digit_like=False)


def metadata(task: ImageTask) -> dict[str, Any]:
    return {
        "name": "clearsight-cnn",
        "version": "4",
        "registry_alias": "champion",
        "run_id": "r1",
        "class_names": list(task.class_names),
        "task": task.to_metadata(),
    }


def answer(task: ImageTask) -> dict[str, Any]:
    probabilities = [0.1] * task.n_classes
    probabilities[1] = 1.0 - 0.1 * (task.n_classes - 1)
    return {
        "request_id": "abc",
        "timing": {"total_ms": 12.0},
        "results": [
            {
                "index": 0,
                "status": "ok",
                "label": 1,
                "class_name": task.class_names[1],
                "confidence": probabilities[1],
                "probabilities": probabilities,
                "top_classes": [],
                "explanations": [],
                "warnings": [],
                "preprocessing": [
                    "resized: 64x64 to 32x32 (the model's input), aspect ratio not kept"
                ],
            }
        ],
    }


def open_page(page: Any, task: ImageTask, sent: list[dict[str, Any]]) -> None:
    """The page at BASE/ui/, its files from serving/ui, the service's routes stubbed."""

    def handle(route: Any) -> None:
        path = route.request.url.removeprefix(BASE)
        if path.startswith("/ui/"):
            name = path.removeprefix("/ui/") or "index.html"
            route.fulfill(path=str(UI_DIR / name))
        elif path == "/metadata":
            route.fulfill(json=metadata(task))
        elif path == "/predict":
            sent.append(json.loads(route.request.post_data))
            route.fulfill(json=answer(task))
        else:
            route.fulfill(status=404, json={"error": "not here", "code": "not_found"})

    page.route(f"{BASE}/**", handle)
    page.goto(f"{BASE}/ui/")


def colour_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), (200, 30, 30), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_colour_model_gets_an_upload_and_answers_with_class_names() -> None:
    from playwright.sync_api import expect

    sent: list[dict[str, Any]] = []
    with browser_page(1100, 900) as page:
        open_page(page, SHAPES, sent)
        expect(page.locator("#draw-title")).to_have_text("1. Upload an image")
        expect(page.locator("#pad")).to_be_hidden()
        expect(page.locator("#picked")).to_be_visible()
        expect(page.locator("#preview-note")).to_contain_text("32x32 colour")
        options = page.locator("#truth option")
        assert options.all_inner_texts() == list(SHAPES.class_names)

        page.locator("#predict").click()  # nothing chosen yet: said, nothing sent
        expect(page.locator("#status")).to_contain_text("Choose an image")
        png = colour_png()
        page.locator("#upload").set_input_files(
            files=[{"name": "red.png", "mimeType": "image/png", "buffer": png}]
        )
        page.wait_for_function("() => document.getElementById('preview').src.startsWith('data:')")
        page.locator("#predict").click()
        expect(page.locator("#verdict")).to_contain_text("square")
        expect(page.locator("#bars b")).to_have_text(list(SHAPES.class_names))
        expect(page.locator("#preprocessing li")).to_contain_text(["resized: 64x64 to 32x32"])
    (body,) = sent
    data = body["images"][0]["data"]
    assert data.startswith("data:image/png;base64,")
    assert base64.b64decode(data.split(",", 1)[1]) == png  # the file itself, not a canvas


def test_a_digit_model_keeps_the_drawing_pad() -> None:
    from playwright.sync_api import expect

    sent: list[dict[str, Any]] = []
    with browser_page(1100, 900) as page:
        open_page(page, DIGITS, sent)
        expect(page.locator("#model")).to_contain_text("clearsight-cnn v4")
        expect(page.locator("#pad")).to_be_visible()
        expect(page.locator("#picked")).to_be_hidden()
        expect(page.locator("#draw-title")).to_have_text("1. Draw a digit")
        page.locator("#predict").click()
        expect(page.locator("#verdict")).to_contain_text("1")
    (body,) = sent
    assert body["images"][0]["data"].startswith("data:image/png;base64,")  # the pad's drawing
