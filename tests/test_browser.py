"""The live page in a real browser: Debian's chromium, driven through chromium-driver by selenium.

Nothing is downloaded: the driver and the browser are the system's (``apt-get install chromium
chromium-driver``). Without them these tests are skipped with that reason, unless
``JAXSTYLE_REQUIRE_BROWSER=1`` (CI) makes a missing browser a failure.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import EXAMPLES

LABELS = ["seed 0, a/b 1e+00", "seed 1, a/b 1e+00", "seed 0, a/b 1e-01", "seed 1, a/b 1e-01"]


def _browser():
    """A headless chromium driven by the system's chromium-driver, or a skip (a failure under
    ``JAXSTYLE_REQUIRE_BROWSER=1``) naming what is missing."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        reason = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("JAXSTYLE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1100,800", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def _wait(condition, timeout: float, what: str):
    """``condition()``'s first true value within ``timeout`` seconds. On a loaded machine a read can
    fail for a moment: the server's answer times out (OSError), or the page replaces an element
    while it is read (selenium's StaleElementReferenceException); such a try counts as "not yet"."""
    from selenium.common.exceptions import WebDriverException
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            value = condition()
        except (OSError, WebDriverException) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def _state(url: str) -> dict:
    with urllib.request.urlopen(url + "state.json", timeout=5) as r:
        return json.load(r)


def _shot(driver) -> np.ndarray:
    png = driver.find_element("id", "variants").screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float64)


def test_the_page_shows_every_variant_and_refreshes_itself_as_the_run_goes(tmp_path):
    driver = _browser()
    cfg = {"content": str(EXAMPLES / "leuvenA.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
           "output": str(tmp_path / "out"), "size": 32, "seeds": [0, 1], "sweep": {"beta": [1, 10]},
           "scales": [], "print_every": 2, "optimizer": {"iterations": 8},
           # Two shallow layers keep the compiled program small: the page, not the picture, is tested.
           "content_layers": {"conv2_1": 1.0}, "style_layers": {"conv1_1": 1.0, "conv2_1": 1.0}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    pause = tmp_path / "pause"
    pause.touch()  # the run waits after its first chunk until this file is gone
    env = {**os.environ, "JAXSTYLE_TEST_PAUSE_FILE": str(pause)}
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle.cli", "--config", str(tmp_path / "cfg.yaml"),
                             "--serve", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        url = _wait(lambda: next((ln.split()[-1] for ln in lines if ln.startswith("live page: ")), None),
                    120, "the live page's address")
        assert url.startswith("http://127.0.0.1:")
        _wait(lambda: _state(url)["status"] == "running", 120, "the first chunk")
        driver.get(url)
        _wait(lambda: all(driver.execute_script(
            "return [...document.querySelectorAll('#variants img')].every(i => i.complete && i.naturalWidth > 0)"
        ) for _ in [0]) and len(driver.find_elements("css selector", "#variants img")) == 4, 30, "the thumbnails")
        captions = lambda: [e.text for e in driver.find_elements("css selector", "#variants figcaption")]  # noqa: E731
        _wait(lambda: captions() == LABELS, 30, f"the captions {LABELS}")
        assert driver.find_element("id", "status").text.lower() == "running"
        loaded = driver.execute_script("return window.jaxstyle.loadedAt")
        updates = driver.execute_script("return window.jaxstyle.imageUpdates")
        during = _shot(driver)

        pause.unlink()  # let the run finish; the page must notice on its own
        _wait(lambda: driver.find_element("id", "status").text.lower() == "finished", 120, "the page to say finished")
        _wait(lambda: driver.execute_script(
            "return [...document.querySelectorAll('#variants img')].every(i => i.complete && i.naturalWidth > 0)"),
            30, "the final thumbnails")
        after = _shot(driver)
        assert driver.execute_script("return window.jaxstyle.loadedAt") == loaded  # never reloaded
        assert driver.execute_script("return window.jaxstyle.imageUpdates") > updates
        assert during.shape == after.shape and np.abs(during - after).mean() > 1.0  # the sheet changed
        assert driver.find_element("id", "curves").is_displayed()
        assert "report" in driver.find_element("id", "files").text
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)  # ends the serving once the run is over
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_the_studio_uploads_runs_and_gives_a_runs_settings_back(tmp_path):
    """Upload a photo and an artwork through the file inputs, start a 32 px run, see it finish in
    the history, fill the form from its card, and get the same image bytes from its config.yaml on
    the command line; a refused upload shows its message on the page."""
    from jaxstyle import cli
    from jaxstyle.serve import studio as st
    from jaxstyle.serve.server import AppServer

    examples = tmp_path / "examples"
    examples.mkdir()
    photo, art, bad = tmp_path / "my photo.png", tmp_path / "my art.jpg", tmp_path / "bad.png"
    Image.open(EXAMPLES / "leuvenA.jpg").convert("RGB").resize((48, 36)).save(photo)
    Image.open(EXAMPLES / "starry_night.jpg").convert("RGB").resize((40, 32)).save(art)
    bad.write_text("<html>not an image</html>")
    studio = st.Studio(tmp_path / "runs", examples)
    server = AppServer(st.make_app(studio, "tok", "127.0.0.1"))
    driver = _browser()
    js = driver.execute_script
    try:
        driver.get(server.url + "?token=tok")
        _wait(lambda: js("return window.studio && window.studio.polls > 0"), 30, "the page's first poll")
        driver.find_element("id", "photo-file").send_keys(str(photo))
        _wait(lambda: driver.find_element("id", "photo").get_attribute("value").startswith("uploads/"), 30,
              "the photo's upload")
        driver.find_element("id", "artwork-file").send_keys(str(art))
        selected = "return [...document.getElementById('artworks').selectedOptions].map(o => o.value)"
        _wait(lambda: [v for v in js(selected) if v.startswith("uploads/") and v.endswith(".jpg")], 30,
              "the artwork's upload")
        content, styles = driver.find_element("id", "photo").get_attribute("value"), js(selected)
        for field, value in (("size", "32"), ("seeds", "0")):
            driver.find_element("id", field).clear()
            driver.find_element("id", field).send_keys(value)
        driver.find_element("css selector", "details summary").click()
        driver.find_element("id", "advanced").send_keys("optimizer: {iterations: 3}\nprint_every: 0")
        driver.find_element("id", "start").click()
        _wait(lambda: "queued" in driver.find_element("id", "message").text, 30, "the run to be queued")
        card = "#history .card[data-state=finished]"
        _wait(lambda: driver.find_elements("css selector", card), 180, "the run's card to say finished")
        name = driver.find_element("css selector", card).get_attribute("data-name")
        _wait(lambda: js(f"const i = document.querySelector('{card} img.sheet'); return i && i.complete "
                         "&& i.naturalWidth > 0"), 30, "the card's picture")

        # Change the form, then take the run's settings back from its card.
        driver.find_element("id", "seeds").clear()
        driver.find_element("id", "seeds").send_keys("7")
        driver.find_element("id", "advanced").clear()
        driver.find_element("css selector", card + " button[data-do=use]").click()
        assert driver.find_element("id", "seeds").get_attribute("value") == "0"
        assert driver.find_element("id", "photo").get_attribute("value") == content and js(selected) == styles
        assert yaml.safe_load(driver.find_element("id", "advanced").get_attribute("value")) == \
            {"optimizer": {"iterations": 3}, "print_every": 0}

        # Its config.yaml, from the card's link, on the command line: the same image bytes.
        href = driver.find_element("css selector", card + " a.config").get_attribute("href")
        request = urllib.request.Request(href, headers={"Cookie": f"{st.cookie_name(server.server_address[1])}=tok"})
        with urllib.request.urlopen(request, timeout=30) as r:
            (tmp_path / "config.yaml").write_bytes(r.read())
        assert cli.main(["--config", str(tmp_path / "config.yaml"), "--set", f"output={tmp_path / 'again'}"]) == 0
        image = json.loads((studio.folder / name / "report.json").read_text())["variants"][0]["image"]
        assert (tmp_path / "again" / image).read_bytes() == (studio.folder / name / image).read_bytes()

        # A refused upload says why on the page.
        driver.find_element("id", "photo-file").send_keys(str(bad))
        _wait(lambda: "not an image" in driver.find_element("id", "message").text, 30, "the refusal")
        assert driver.find_element("id", "message").get_attribute("class") == "error"
    finally:
        driver.quit()
        server.stop()
