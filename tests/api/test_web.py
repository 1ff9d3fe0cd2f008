"""The web page at ``/`` end to end in real headless Chromium (Debian's chromium + chromedriver,
driven by Selenium): upload a photo, drop a generated one, show an error, read a registration;
screenshots in ``reports/api/`` (``webpage.png`` ...)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from client.server import Server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = ROOT / "reports" / "api" / "webpage.png"
TYPES = {"A320", "A388", "B738", "B744"}
FAMILIES = {"A320", "A380", "A350", "B737", "B747", "B777"}

DROP_JS = """
const done = arguments[arguments.length - 1];
const c = document.createElement("canvas"); c.width = 64; c.height = 48;
const g = c.getContext("2d"); const grad = g.createLinearGradient(0, 0, 64, 48);
grad.addColorStop(0, "#1040a0"); grad.addColorStop(1, "#f0f0f0"); g.fillStyle = grad; g.fillRect(0, 0, 64, 48);
c.toBlob((blob) => {
  const dt = new DataTransfer(); dt.items.add(new File([blob], "dropped.png", {type: "image/png"}));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
  done(true);
}, "image/png");
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian chromium and chromium-driver are not installed (make api-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, predicate, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(predicate)


def _text(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_upload_shows_both_stages_and_top_k(server, smoke_photos, browser):
    from selenium.webdriver.common.by import By

    photo = next(p for p in smoke_photos if p.name == "boeing_777_turkish.jpg")
    api = requests.post(server.url + "/predict", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
                        timeout=60).json()
    browser.get(server.url + "/")
    assert browser.title == "planespotter"
    browser.find_element(By.ID, "file").send_keys(str(photo))
    _wait(browser, lambda d: d.find_element(By.ID, "result").is_displayed())
    assert _text(browser, "status") == f"Done: {photo.name}"
    assert _text(browser, "manufacturer") == api["manufacturer"]["label"]
    assert _text(browser, "family") == api["family"]["label"] and _text(browser, "family") in FAMILIES
    assert _text(browser, "answer") == api["answer"]["label"]
    if api["type"]["label"]:
        assert _text(browser, "type") == api["type"]["label"] and _text(browser, "type") in TYPES
    else:  # not confident enough: the page says the answer stops at the family
        assert "family" in _text(browser, "type")
    assert _text(browser, "manufacturer-p") == f"{100 * api['manufacturer']['probability']:.1f} %"
    topk = browser.find_elements(By.CSS_SELECTOR, "#topk-table tbody tr")
    assert len(topk) == len(api["predictions"][0]["top_k"]) >= 1
    first = [td.text for td in topk[0].find_elements(By.TAG_NAME, "td")]
    best = api["predictions"][0]["top_k"][0]
    assert first[:4] == ["1", best["manufacturer"], best["family"], best["type"] or best["family"] + " family"]
    branches = browser.find_elements(By.CSS_SELECTOR, "#branches tbody tr")
    assert len(branches) == (2 if api["unsure"] else 1)
    assert browser.find_element(By.ID, "unsure").is_displayed() == api["unsure"]
    assert api["model_version"] in _text(browser, "meta")
    assert _wait(browser, lambda d: d.execute_script(
        "const i = document.getElementById('preview'); return i.complete && i.naturalWidth > 0;"))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


def test_drop_and_error_display(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    assert browser.execute_async_script(DROP_JS)
    _wait(browser, lambda d: _text(d, "status") == "Done: dropped.png")
    assert _text(browser, "manufacturer") in ("Airbus", "Boeing")
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    _wait(browser, lambda d: _text(d, "error").startswith("Error:"))
    assert "not a JPEG/PNG/WEBP image" in _text(browser, "error")
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_docs_page_renders_every_operation(server, browser):
    from selenium.webdriver.common.by import By

    spec = requests.get(server.url + "/openapi.json", timeout=10).json()
    ops = {(m.upper(), p) for p, o in spec["paths"].items() for m in o}

    def shown(d):  # (method, path) of every rendered operation (one listed under two tags counts once)
        return {(b.find_element(By.CLASS_NAME, "opblock-summary-method").text,
                 b.find_element(By.CLASS_NAME, "opblock-summary-path").get_attribute("data-path"))
                for b in d.find_elements(By.CSS_SELECTOR, ".opblock")}

    browser.get(server.url + "/__docs__/")
    _wait(browser, lambda d: shown(d) == ops)
    assert "planespotter" in _text(browser, "swagger-ui")
    shot = SCREENSHOT.with_name("docs.png")
    shot.parent.mkdir(parents=True, exist_ok=True)  # also when run alone
    assert browser.save_screenshot(str(shot))


BOX_SCREENSHOT = SCREENSHOT.with_name("webpage_box.png")
NONE_SCREENSHOT = SCREENSHOT.with_name("webpage_none.png")

GEOMETRY_JS = """
const img = document.getElementById('preview'), i = img.getBoundingClientRect();
const b = document.getElementById('box').getBoundingClientRect();
return {img: [i.left, i.top, i.width, i.height], box: [b.left, b.top, b.width, b.height],
        natural: [img.naturalWidth, img.naturalHeight]};
"""


def _upload(browser, srv, path):
    from selenium.webdriver.common.by import By

    browser.get(srv.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))
    _wait(browser, lambda d: _text(d, "status") == f"Done: {path.name}")


def _api(srv, path):
    return requests.post(srv.url + "/predict", files={"image": (path.name, path.read_bytes())}, timeout=60).json()


def test_box_is_drawn_over_the_photo(feature_server, feature_image_dir, browser):
    """The crop box of the answer, drawn over the displayed (scaled) photo where the API says,
    also for an EXIF-rotated JPEG (the browser shows it rotated, the box is in that frame)."""
    from PIL import Image, ImageOps
    from selenium.webdriver.common.by import By

    names = [n for n in ("exif6.jpg", "photo.jpg") if (feature_image_dir / n).exists()]
    for name in names:
        path = feature_image_dir / name
        api = _api(feature_server, path)
        box = api["box"]
        assert box is not None
        _upload(browser, feature_server, path)
        _wait(browser, lambda d: d.find_element(By.ID, "box").is_displayed())
        text = api["answer"]["text"]
        assert _text(browser, "answer-text") == text[0].upper() + text[1:]
        assert _text(browser, "answer") == api["answer"]["label"]
        g = browser.execute_script(GEOMETRY_JS)
        with Image.open(path) as im:
            assert g["natural"] == list(ImageOps.exif_transpose(im).size)
        (il, it, iw, ih), (bl, bt, bw, bh) = g["img"], g["box"]
        sx, sy = iw / g["natural"][0], ih / g["natural"][1]
        expected = [il + box[0] * sx, it + box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy]
        assert [bl, bt, bw, bh] == pytest.approx(expected, abs=1.5), (g, box)
        assert iw < g["natural"][0] or ih < g["natural"][1] or name == "exif6.jpg"  # drawn scaled
        caption = _text(browser, "box-caption")
        assert caption.startswith("Red box") and f"{box[2]}, {box[3]} px" in caption
        assert "Aircraft check" in _text(browser, "aircraft")
    BOX_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(BOX_SCREENSHOT))


def test_other_and_not_an_aircraft_in_words(feature_server, none_server, feature_image_dir, browser):
    red = feature_image_dir / "red.png"
    _upload(browser, feature_server, red)
    assert _text(browser, "answer-text") == "Another manufacturer (not Airbus or Boeing)"
    assert _text(browser, "manufacturer") == "Other" and "another manufacturer" in _text(browser, "family")
    assert "not an Airbus or a Boeing" in _text(browser, "answer-note")

    _upload(browser, none_server, red)
    assert _text(browser, "answer-text") == "Not an aircraft"
    assert _text(browser, "manufacturer") == "(not an aircraft)"
    assert _text(browser, "answer-note").startswith("No aircraft found in this photo")
    assert "needs 100.0 %" in _text(browser, "aircraft")
    assert browser.save_screenshot(str(NONE_SCREENSHOT))


def test_old_version_page_says_whole_photo(server, smoke_photos, browser):
    from selenium.webdriver.common.by import By

    _upload(browser, server, smoke_photos[0])
    assert not browser.find_element(By.ID, "box").is_displayed()
    assert _text(browser, "box-caption") == "The answer came from the whole photo."
    assert not browser.find_element(By.ID, "aircraft").is_displayed()
    api = _api(server, smoke_photos[0])
    assert _text(browser, "answer-text") == api["answer"]["text"]


REG_SCREENSHOT = SCREENSHOT.with_name("webpage_registration.png")

REG_BOX_JS = """
const img = document.getElementById('preview'), i = img.getBoundingClientRect();
const b = document.getElementById('reg-box').getBoundingClientRect();
return {img: [i.left, i.top, i.width, i.height], box: [b.left, b.top, b.width, b.height],
        natural: [img.naturalWidth, img.naturalHeight],
        label: document.getElementById('reg-box-label').textContent,
        requests: performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('predict'))};
"""


@pytest.fixture(scope="module")
def registration_png(tmp_path_factory):
    """A white 1200x500 PNG with ``D-ABYI`` in black (PIL's default font at 120 px), checked to be
    read by the registration reader against the configured registry; returns (path, registry path)."""
    from PIL import Image, ImageDraw, ImageFont

    from model.reader import RegistrationReader
    from model.registry import load_configured

    registry = load_configured()
    if registry is None:
        pytest.skip("no registry (PLANESPOTTER_REGISTRY, or ../shared/data/aircraft-registry/registry.csv.gz)")
    img = Image.new("RGB", (1200, 500), "white")
    ImageDraw.Draw(img).text((150, 180), "D-ABYI", fill="black", font=ImageFont.load_default(size=120))
    reading = RegistrationReader(registry).read(img)
    assert reading is not None and reading.text == "D-ABYI" and reading.entry.icao_type == "B748", reading
    path = tmp_path_factory.mktemp("registration") / "d-abyi.png"
    img.save(path)
    return path, registry.path


@pytest.fixture(scope="module")
def registration_server(tiny_model_dir, registration_png):
    """gunicorn serving the tiny model (no localizer: no aircraft box, the whole photo is read)
    with the registry of :func:`registration_png`."""
    srv = Server(tiny_model_dir, env={"PLANESPOTTER_REGISTRY": str(registration_png[1])})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_registration_read_and_boxed(registration_server, registration_png, browser, tmp_path):
    """Tick "Read the registration": the page posts ``?registration=1``, shows the registration,
    its registry type and whether it agrees with the image, and draws its box (labelled with the
    text) over the scaled photo where the API says; a photo without one says "No registration
    read"; unticked, nothing is read."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    path = registration_png[0]
    with path.open("rb") as f:
        api = requests.post(registration_server.url + "/predict?registration=1",
                            files={"image": (path.name, f.read(), "image/png")}, timeout=120).json()
    p = api["predictions"][0]
    reg = p["registration"]
    assert reg is not None and reg["text"] == "D-ABYI" and reg["icao_type"] == "B748", api
    assert p["answer"]["source"] in ("image", "registration")

    browser.get(registration_server.url + "/")
    tick = browser.find_element(By.ID, "read-registration")
    assert not tick.is_selected()
    assert "Read the registration (slower)" in browser.find_element(By.ID, "drop").text
    tick.click()
    assert tick.is_selected()
    browser.find_element(By.ID, "file").send_keys(str(path))
    _wait(browser, lambda d: _text(d, "status") == f"Done: {path.name}", timeout=120)
    assert browser.find_element(By.ID, "registration").is_displayed()
    assert _text(browser, "registration-text") == "D-ABYI"
    assert _text(browser, "registration-type") == f"ICAO type B748 · {reg['description']}"
    agrees = browser.find_element(By.ID, "registration-agrees")
    assert agrees.get_attribute("data-agrees") == str(reg["agrees"]).lower()
    assert agrees.text.startswith("Agrees with the image: " + ("yes" if reg["agrees"] else "no"))
    source = _text(browser, "registration-source")
    if p["answer"]["source"] == "registration":
        assert "type comes from the registration" in source
        assert "from the registration D-ABYI" in _text(browser, "answer-note")
        assert _text(browser, "type") == "B748" and _text(browser, "answer") == "B748"
    else:
        assert source == "The type comes from the image."
    assert _text(browser, "answer") == p["answer"]["label"]

    _wait(browser, lambda d: d.find_element(By.ID, "reg-box").is_displayed())
    g = browser.execute_script(REG_BOX_JS)
    assert any(n.endswith("registration=1") for n in g["requests"]), g["requests"]
    assert g["label"] == "D-ABYI" and browser.find_element(By.ID, "reg-box-label").is_displayed()
    with Image.open(path) as im:
        assert g["natural"] == list(im.size)
    box = reg["box"]
    (il, it, iw, ih), (bl, bt, bw, bh) = g["img"], g["box"]
    assert iw < g["natural"][0]  # drawn scaled
    sx, sy = iw / g["natural"][0], ih / g["natural"][1]
    expected = [il + box[0] * sx, it + box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy]
    assert [bl, bt, bw, bh] == pytest.approx(expected, abs=1.5), (g, box)
    assert f"Green box: the registration D-ABYI ({box[0]}, {box[1]}" in _text(browser, "reg-box-caption")
    assert browser.find_element(By.ID, "box").is_displayed() == (p["box"] is not None)
    REG_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(REG_SCREENSHOT))

    blank = tmp_path / "blank.png"  # asked, nothing to read
    Image.new("RGB", (320, 200), (40, 90, 160)).save(blank)
    browser.find_element(By.ID, "file").send_keys(str(blank))
    _wait(browser, lambda d: _text(d, "status") == f"Done: {blank.name}", timeout=120)
    assert _text(browser, "registration-text") == "No registration read"
    assert not browser.find_element(By.ID, "reg-box").is_displayed()

    _upload(browser, registration_server, path)  # a fresh page: unticked, not read
    assert not browser.find_element(By.ID, "read-registration").is_selected()
    assert not browser.find_element(By.ID, "registration").is_displayed()
    assert not browser.find_element(By.ID, "reg-box").is_displayed()


UNSURE_SCREENSHOT = SCREENSHOT.with_name("webpage_unsure.png")
UNSURE_OLD = "Unsure: the manufacturer is below the routing threshold; both leading branches are shown."

SHOW_JS = """
show(arguments[0], false);
const u = document.getElementById('unsure');
return {hidden: u.hidden, text: u.textContent, html: u.innerHTML};
"""


@pytest.fixture(scope="module")
def unsure_server(tiny_model_dir):
    """gunicorn serving the tiny model with ``PLANESPOTTER_THRESHOLD=1.0``: stage 1 never reaches
    the routing threshold, so every answer is unsure (``low_confidence`` or ``types_close``)."""
    srv = Server(tiny_model_dir, env={"PLANESPOTTER_THRESHOLD": "1.0"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_unsure_says_why_in_words(unsure_server, smoke_photos, browser):
    """An unsure answer (a real one from the server) says why: "Unsure: " and its
    ``unsure_reasons`` in words (``/metadata``'s words when it has them, else the page's own,
    both :data:`model.confidence.REASON_TEXT`), joined with "; "; several reasons join the same
    way, an unknown code is shown as text (never as markup); without ``unsure_reasons`` (an older
    server) the page says its old sentence."""
    from selenium.webdriver.common.by import By

    from model.confidence import REASON_TEXT

    photo = smoke_photos[0]
    body = _api(unsure_server, photo)
    p = body["predictions"][0]
    assert p["unsure"] and p["unsure_reasons"], p
    assert set(p["unsure_reasons"]) <= {"low_confidence", "types_close"}, p  # tiny model: no novelty, no views
    words = requests.get(unsure_server.url + "/metadata", timeout=10).json().get("unsure_reasons") or REASON_TEXT
    assert words == REASON_TEXT

    _upload(browser, unsure_server, photo)
    assert browser.find_element(By.ID, "unsure").is_displayed()
    assert _text(browser, "unsure") == "Unsure: " + "; ".join(words[c] for c in p["unsure_reasons"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#branches tbody tr")) == 2
    assert any(n.endswith("/metadata") for n in browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name);"))
    UNSURE_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(UNSURE_SCREENSHOT))

    # The page's own rendering on variants of that answer: several reasons, an unknown code, none.
    p["unsure_reasons"] = ["unusual_photo", "views_disagree", "<b>new_code</b>"]
    shown = browser.execute_script(SHOW_JS, body)
    assert not shown["hidden"]
    assert shown["text"] == ("Unsure: " + REASON_TEXT["unusual_photo"] + "; " + REASON_TEXT["views_disagree"]
                             + "; <b>new code</b>")
    assert "<b>" not in shown["html"] and "&lt;b&gt;" in shown["html"]
    del p["unsure_reasons"]
    body.pop("unsure_reasons", None)
    assert browser.execute_script(SHOW_JS, body)["text"] == UNSURE_OLD
    p["unsure"], p["unsure_reasons"] = False, []
    assert browser.execute_script(SHOW_JS, body)["hidden"]
