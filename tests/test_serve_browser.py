"""The page in a real browser: Debian's headless chromium driven by Selenium through chromium-driver.

Uploads a photo (PNG), a TIFF (which the browser cannot show: its "before" comes from the server)
and a file that is not an image; waits for the results; checks the failure is shown in words on
its file; moves the before/after slider and the zoom; downloads one result and all of them as a
zip. `.ci/run` installs chromium with apt; elsewhere the test skips and says why.

SURGE_SCREENSHOT=docs/serve.png makes the run save a screenshot of the page there (how the README's
screenshot is made); without it nothing is written outside the test's temp folder.
"""

import io
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="surge serve needs the 'serve' extra (fastapi, uvicorn, python-multipart)")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the 'test' extra)")
from serve_helpers import thread_server  # noqa: E402

from surge.imaging.bicubic import imresize  # noqa: E402
from surge.serve.settings import ServeSettings  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)"),
]


def _photo(path: Path, name: str = "astronaut", top: int = 0, left: int = 64) -> None:
    """A 384x384 crop of a scikit-image photo, downscaled x4 with MATLAB bicubic: a small real
    photo whose upscale is worth looking at in the screenshot."""
    from skimage import data

    hr = getattr(data, name)()[top : top + 384, left : left + 384]
    lr = np.clip(np.round(imresize(hr.astype(np.float64) / 255.0, scale=0.25) * 255), 0, 255).astype(np.uint8)
    Image.fromarray(lr).save(path)


def _wait(condition, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
                "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def test_page_uploads_shows_progress_compares_and_downloads(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    photo, scan, junk = tmp_path / "astronaut.png", tmp_path / "scan.tif", tmp_path / "notes.jpg"
    _photo(photo)
    _photo(scan, "coffee", 8, 120)
    junk.write_bytes(b"not an image at all" * 40)

    # bicubic keeps the test fast; the screenshot shows what users get: the server's default choice.
    shot = os.environ.get("SURGE_SCREENSHOT")
    settings = ServeSettings(model=None if shot else "bicubic", devices=["cpu"], tile=32)
    with thread_server(settings) as (url, app):
        browser.get(url + "/")
        _wait(lambda: browser.execute_script("return document.body.dataset.ready"), what="the page to load models")
        models = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#model option")]
        assert "bicubic" in models and len(models) > 1
        Select(browser.find_element(By.ID, "format")).select_by_value("png")
        browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in (photo, scan, junk)))

        def statuses():
            cards = browser.find_elements(By.CSS_SELECTOR, "#list .card")
            return [c.get_attribute("data-status") for c in cards]

        _wait(lambda: len(statuses()) == 3 and all(s in ("done", "failed") for s in statuses()),
              timeout=400, what="three finished cards")
        cards = browser.find_elements(By.CSS_SELECTOR, "#list .card")
        assert statuses() == ["done", "done", "failed"]
        assert cards[2].find_element(By.CSS_SELECTOR, ".error").text == "notes.jpg: not a recognised image file"
        status = cards[0].find_element(By.CSS_SELECTOR, ".status").text
        model = re.fullmatch(r"done: (\S+), [0-9.]+ s", status).group(1)
        assert model == "bicubic" or shot
        # Progress was reported in tiles: 96x96 in 32x32 tiles is 9, and the bar reached them all.
        assert cards[0].find_element(By.CSS_SELECTOR, ".bar").get_attribute("max") == "9"
        assert cards[0].find_element(By.CSS_SELECTOR, ".info").text == "96x96 -> 384x384"
        # The TIFF's "before" came from the server as PNG (the browser cannot decode TIFF) and shows.
        assert browser.execute_script("return arguments[0].querySelector('.before').naturalWidth", cards[1]) == 96
        assert app.state.store.stats()["jobs"] == 0  # the page deleted each job once it had the result

        # Slider: drag on the picture to 25% of its width; the "before" layer's clip follows.
        before = cards[0].find_element(By.CSS_SELECTOR, ".before")
        assert before.value_of_css_property("clip-path") == "inset(0px 50% 0px 0px)"
        stage = cards[0].find_element(By.CSS_SELECTOR, ".stage")
        width = stage.size["width"]
        ActionChains(browser).move_to_element_with_offset(stage, -width // 4, 0).click_and_hold().move_by_offset(-5, 0).release().perform()
        slider = float(cards[0].find_element(By.CSS_SELECTOR, ".slider").get_attribute("value"))
        assert 15 < slider < 30, slider
        assert before.value_of_css_property("clip-path") == f"inset(0px {100 - slider:g}% 0px 0px)"
        # Zoom 200%: the picture is shown at twice its pixel size, pixelated.
        Select(cards[0].find_element(By.CSS_SELECTOR, ".zoom")).select_by_value("2")
        assert stage.size["width"] == 768 and "pixels" in stage.get_attribute("class")
        Select(cards[0].find_element(By.CSS_SELECTOR, ".zoom")).select_by_value("fit")

        if shot:
            ActionChains(browser).move_to_element_with_offset(stage, 0, 0).click().perform()  # the split in the middle
            browser.set_window_size(1280, 1600)  # tall enough for the failed file's card too
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(shot)

        # Download one, then all as a zip.
        cards[0].find_element(By.CSS_SELECTOR, ".download").click()
        one = _wait(lambda: browser.downloads / "astronaut_x4.png" if (browser.downloads / "astronaut_x4.png").exists() else None,
                    what="the single download")
        got = Image.open(one)
        assert got.size == (384, 384) and got.info["Software"].endswith(f"({model})")
        browser.find_element(By.ID, "download-all").click()
        archive = browser.downloads / "surge-upscaled.zip"
        _wait(lambda: archive.exists() and archive.stat().st_size > 0, what="the zip download")
        with zipfile.ZipFile(archive) as z:
            assert z.testzip() is None  # every CRC the page computed is right
            assert z.namelist() == ["astronaut_x4.png", "scan_x4.png"]
            for name in z.namelist():
                assert Image.open(io.BytesIO(z.read(name))).size == (384, 384)
            assert z.read("astronaut_x4.png") == one.read_bytes()


def test_page_asks_for_the_token_once_and_keeps_it_for_the_tab(browser, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "astronaut.png"
    _photo(photo)
    settings = ServeSettings(model="bicubic", devices=["cpu"], token="correct-horse")
    with thread_server(settings) as (url, app):
        browser.get(url + "/")
        form = _wait(lambda: (f := browser.find_element(By.ID, "token-form")).is_displayed() and f, what="the token form")
        browser.find_element(By.ID, "token").send_keys("wrong")
        form.find_element(By.CSS_SELECTOR, "button").click()
        _wait(lambda: browser.find_element(By.ID, "token-error").text == "That token was refused.", what="the refusal")
        browser.find_element(By.ID, "token").clear()
        browser.find_element(By.ID, "token").send_keys("correct-horse")
        form.find_element(By.CSS_SELECTOR, "button").click()
        _wait(lambda: browser.execute_script("return document.body.dataset.ready"), what="the models with the token")
        browser.refresh()  # sessionStorage keeps it for this tab: no second question
        _wait(lambda: browser.execute_script("return document.body.dataset.ready"), what="the page after reload")
        assert not browser.find_element(By.ID, "token-form").is_displayed()
        browser.find_element(By.ID, "files").send_keys(str(photo))
        card = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#list .card[data-status=done]"), what="the result")[0]
        assert card.find_element(By.CSS_SELECTOR, ".info").text == "96x96 -> 384x384"
