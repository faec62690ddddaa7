"""The studio as a person uses it: Playwright drives Debian's Chromium (headless) against a real
server. Generate an animation, find it in the gallery, reload and find it again, reproduce it with
identical pixels; start a tiny training run and watch it progress.

Needs `apt-get install chromium` (.ci/run does it) and the test extra (playwright). Without them the
tests skip and say why. With SPRITEFORGE_STUDIO_SCREENSHOTS=DIR each tab is saved as
DIR/studio_<tab>.png (how docs/studio_*.png are made; SPRITEFORGE_STUDIO_MODEL=PATH puts a better
model into the workspace for them).
"""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_studio_support import serve_studio, tiny_train_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
SHOTS = os.environ.get("SPRITEFORGE_STUDIO_SCREENSHOTS")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
pytest.importorskip("gradio", reason="the studio extra (gradio) is not installed: pip install -e '.[test]'")
httpx = pytest.importorskip("httpx")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; .ci/run does) "
                "to run the studio browser tests", allow_module_level=True)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_studio(tmp_path_factory.mktemp("studio_browser"), tmp_path_factory.getbasetemp(),
                            os.environ.get("SPRITEFORGE_STUDIO_MODEL"))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(server.url + "/")
    pg.wait_for_selector("#generate-btn")
    yield pg
    ctx.close()


def text_of(page, elem_id: str) -> str:
    return page.input_value(f"#{elem_id} textarea, #{elem_id} input")


def wait_text(page, elem_id: str, needle: str, timeout: float = 60_000) -> str:
    page.wait_for_function(f"(document.querySelector('#{elem_id}')?.innerText || '').includes({needle!r})",
                           timeout=timeout)
    return page.inner_text(f"#{elem_id}")


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def shot(page, tab: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(800)
        page.screenshot(path=str(Path(SHOTS) / f"studio_{tab}.png"), full_page=True)


def generate(page, before: str = "") -> str:
    """Click Generate, wait for a new gallery item id in the status line, return it."""
    page.click("#generate-btn")
    page.wait_for_function("(t => { const s = document.querySelector('#gen-status')?.innerText || '';"
                           " return s.includes('done: gallery item') && !s.includes(t); })", arg=before or "\x00")
    return page.inner_text("#gen-status").split("`")[-2] if "`" in page.inner_text("#gen-status") else \
        page.inner_text("#gen-status").split()[-1]


def test_generate_gallery_reload_reproduce(page, server):
    hint = wait_text(page, "model-hint", "takes a")              # the page's load event has run
    if os.environ.get("SPRITEFORGE_STUDIO_MODEL"):               # the screenshot model: a text model
        page.locator("#model input").fill("models/sprites.safetensors")
        page.keyboard.press("Enter")
        hint = wait_text(page, "model-hint", "takes a **prompt**".replace("**", ""))
    page.fill("#prompt textarea, #prompt input", "a red knight walking right" if "prompt" in hint else "knight")
    page.fill("#seed input", "42")
    first = generate(page)
    assert page.locator("#sheet img").count() == 1 and page.locator("#gif img").count() == 1
    assert "Seed: 42" in text_of(page, "params")
    shot(page, "generate")

    open_tab(page, "Gallery")
    wait_text(page, "gallery-count", "1 of 1 item")
    assert page.locator("#gallery-grid img").count() == 1
    page.reload()                                                 # survives a reload
    page.wait_for_selector("#generate-btn")
    open_tab(page, "Gallery")
    wait_text(page, "gallery-count", "1 of 1 item")
    page.locator("#gallery-grid img").first.click()
    page.wait_for_function("document.querySelector('#selected-id textarea, #selected-id input').value.length > 0")
    assert text_of(page, "selected-id") == first
    shot(page, "gallery")

    page.click("#reproduce-btn")                                  # settings back into Generate
    wait_text(page, "gen-status", "loaded")
    assert text_of(page, "seed") == "42"
    second = generate(page, before=first)
    assert second != first
    items = httpx.get(server.url + "/api/v1/gallery", params={"order": "oldest"}, timeout=30).json()["items"]
    assert [i["id"] for i in items] == [first, second]
    a, b = (np.asarray(Image.open(io.BytesIO(httpx.get(i["sheet_url"], timeout=30).content))) for i in items)
    assert np.array_equal(a, b)                                   # identical pixels
    drop = {"id", "created"}
    assert {k: v for k, v in items[0]["settings"].items() if k not in drop} == \
           {k: v for k, v in items[1]["settings"].items() if k not in drop}

    open_tab(page, "Compare")
    if os.environ.get("SPRITEFORGE_STUDIO_MODEL"):
        page.locator("#c-model input").fill("models/sprites.safetensors")
        page.keyboard.press("Enter")
    c_hint = "prompt" in hint and not os.environ.get("SPRITEFORGE_STUDIO_MODEL")  # screenshots: the model's own default
    page.fill("#c-prompt textarea, #c-prompt input", "a red knight walking right" if c_hint else "knight")
    page.click("#compare-btn")
    page.wait_for_selector("#compare-grid img")
    shot(page, "compare")


def test_start_a_tiny_training_run_and_see_progress(page, server):
    open_tab(page, "Train")
    wait_text(page, "t-status", "No training yet")
    page.fill("#t-name textarea, #t-name input", "ui-run")
    page.fill("#t-minutes input", "0")
    page.fill("#t-steps input", "6")
    page.fill("#t-extra textarea", "\n".join(tiny_train_settings() + ["train.frames=4"]))
    page.click("#t-start")
    status = wait_text(page, "t-status", "step", timeout=30_000)
    assert "runs/ui-run" in status
    wait_text(page, "t-status", "finished", timeout=90_000)           # the 2 s timer keeps the tab current
    assert "step 6 / 6" in page.inner_text("#t-status")
    page.wait_for_selector("#train-sample img")                      # the latest sample grid
    assert page.locator("#t-plot canvas, #t-plot svg").count() >= 1  # the loss plot
    shot(page, "train")
    open_tab(page, "Generate")
    page.click("#refresh-models")                                    # the new run is offered in Generate
    page.wait_for_timeout(500)
    page.locator("#model input").click()
    assert page.get_by_role("option", name="runs/ui-run").count() == 1
