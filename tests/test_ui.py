"""`oneword ui` in a real browser: Playwright drives Debian's Chromium against the app on 127.0.0.1.

The tests share one server (a fresh run folder) and run in file order: the word learned by clicking in the
first is the one the later ones generate, edit, convert and evaluate with. Screenshots of each tab go to
$ONEWORD_UI_SCREENSHOTS (docs/img to refresh docs/ui.md's), else to a temporary folder.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import socket
import struct
import time
import zlib
from pathlib import Path

import pytest
import torch

from oneword.errors import OnewordError

CHROMIUM = os.environ.get("ONEWORD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SLOW = 420  # seconds: the longest wait for a learning job (two shared CPU cores)


def _require_browser_stack():
    """In CI a missing piece fails the tests; elsewhere it skips them, saying what to install."""
    missing = []
    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} (pip install -e '.[test,ui]')")
    if not Path(CHROMIUM).exists():
        missing.append("chromium (apt-get install chromium)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("browser tests need " + ", ".join(missing))
        pytest.skip("browser tests need " + ", ".join(missing))


# ------------------------------------------------------------------------------------------------ no browser
def test_listens_on_loopback_unless_given_a_login(tmp_path):
    from oneword.ui import security, serve

    assert security.is_loopback("127.0.0.1") and security.is_loopback("::1") and security.is_loopback("localhost")
    assert not security.is_loopback("0.0.0.0") and not security.is_loopback("192.168.1.5")
    with pytest.raises(OnewordError, match="needs --auth"):
        serve(tmp_path / "runs", host="0.0.0.0", block=False)
    assert not (tmp_path / "runs").exists()  # refused before anything was made
    creds = security.parse_auth("ann:secret")
    assert creds == [("ann", "secret")]
    assert "warning" in security.check_listen("0.0.0.0", creds)
    f = tmp_path / "users.txt"
    f.write_text("# people\nann:one\n\nbob:two:with-colon\n")
    assert security.parse_auth(auth_file=f) == [("ann", "one"), ("bob", "two:with-colon")]
    for bad in ("nopassword", ":x", "x:"):
        with pytest.raises(OnewordError, match="user:password"):
            security.parse_auth(bad)


def test_folder_fields_stay_inside_their_root(tmp_path):
    from oneword.ui.security import inside

    root = tmp_path / "root"
    (root / "photos").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    assert inside(root, "photos") == (root / "photos").resolve()
    assert inside(root, str(root / "photos")) == (root / "photos").resolve()
    for escape in ("..", "../secret", "photos/../../secret", str(tmp_path / "secret"), "link", "/etc", "~"):
        with pytest.raises(OnewordError, match="outside"):
            inside(root, escape)


def test_the_progress_log_costs_nothing_per_step(tmp_path):
    """The worker's bar subclass writes at most twice a second; per step it adds a clock read. 20,000 updates
    of it against the plain bar: under 20 us a step more (a world learning step takes ~50 ms on a CPU core,
    ~10 ms on a GPU), so the UI's learning rate is `oneword learn`'s."""
    import tqdm.auto

    from oneword.ui import worker

    plain = tqdm.auto.tqdm
    log = tmp_path / "progress.jsonl"
    try:
        worker.install_progress_log(str(log))
        logged = tqdm.auto.tqdm
    finally:
        tqdm.auto.tqdm = plain

    def per_update(cls, **kw):
        bar = cls(total=20000, file=io.StringIO(), mininterval=30.0, **kw)
        t = time.perf_counter()
        for _ in range(20000):
            bar.update(1)
        dt = (time.perf_counter() - t) / 20000
        bar.close()
        return dt

    extra = min(per_update(logged, desc="learning") - per_update(plain, desc="learning") for _ in range(3))
    assert extra < 20e-6
    records = [line for line in log.read_text().splitlines() if line]
    assert records and '"start": true' in records[0]


# ------------------------------------------------------------------------------------------------ fixtures
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world_photos(tmp_path_factory):
    """Five rendered photos of the world's teal ring (a concept no world word names), under the photos root."""
    from oneword.world.concepts import NOVEL_CONCEPTS

    root = tmp_path_factory.mktemp("ui")
    folder = root / "photos-root" / "teal-ring"
    folder.mkdir(parents=True)
    for i, im in enumerate(NOVEL_CONCEPTS["teal_ring"].photos(5, seed=0)):
        im.save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def server(world_photos):
    _require_browser_stack()
    from oneword.ui import serve

    root = world_photos.parent.parent / "runs"
    s = serve(root, port=_free_port(), block=False, quiet=True, photos_root=world_photos.parent)
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request, tmp_path_factory):
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(server.url)
    pg.wait_for_selector("#learn-start")
    yield pg
    # the page as the test left it, for a failure's report
    last = tmp_path_factory.getbasetemp() / f"last-{request.node.name}.png"
    try:
        pg.screenshot(path=str(last), full_page=True)
        print(f"page at the end: {last}")
    except Exception:
        pass
    ctx.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("ONEWORD_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------------------------------------------ page helpers
def wait_for(predicate, timeout: float = 60, what: str = "condition", every: float = 0.25):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def message(pg, box: str) -> str:
    return pg.locator(f"#{box} [data-testid=markdown]").inner_text().strip()


def new_message(pg, box: str, before: str = "", timeout: float = 120) -> str:
    """The tab's message box once it says something new (a handler's answer)."""
    return wait_for(lambda: (m := message(pg, box)) and m != before and m, timeout, f"a message in #{box}")


def tab(pg, name: str) -> None:
    pg.click(f"button[role=tab]:has-text('{name}')")
    pg.wait_for_timeout(1500)  # its word lists refresh


def pick(pg, box: str, text: str) -> None:
    """Choose an option of a Gradio dropdown by its visible text (again if the list was redrawn under the click:
    a tab's word lists refresh when it opens)."""
    for attempt in range(4):
        try:
            pg.click("#ow-header")  # away from any open list: a click on the field then opens its list
            pg.click(f"#{box} input")
            pg.locator("ul[role=listbox] li", has_text=text).first.click(timeout=5000)
            pg.click("#ow-header")
            if text in pg.locator(f"#{box}").inner_text() or text in pg.locator(f"#{box} input").input_value():
                return
        except Exception:
            if attempt == 3:
                raise
        pg.wait_for_timeout(1000)
    raise AssertionError(f"could not choose {text} in #{box}")


def fill(pg, box: str, value) -> None:
    field = pg.locator(f"#{box} input, #{box} textarea").first
    for _ in range(3):  # again if the field was redrawn under the typing (an accordion opening, a busy machine)
        field.fill(str(value))
        field.press("Tab")  # leave the field: the page takes the value
        if field.input_value() == str(value):
            return
        pg.wait_for_timeout(500)
    assert field.input_value() == str(value)


def step(pg) -> int:
    loc = pg.locator("#learn-step")
    return int(loc.inner_text()) if loc.count() else -1


def state(pg) -> str:
    loc = pg.locator("#learn-state")
    return loc.inner_text().strip() if loc.count() else ""


def wait_job(pg, predicate, timeout: float, what: str):
    """wait_for, except that a failed job fails at once with what the page says of it."""

    def check():
        if state(pg) == "failed":
            raise AssertionError(f"the job failed while waiting for {what}: {pg.locator('#learn-status').inner_text()}")
        return predicate()

    return wait_for(check, timeout, what)


def choose_job(pg, name: str) -> None:
    pick(pg, "learn-job", name)
    wait_for(lambda: name in pg.locator("#learn-status").inner_text(), 30, f"job {name} shown")


def start_job(
    pg,
    token: str,
    steps: int,
    files=None,
    folder: str | None = None,
    preview_every: int = 0,
    seed: int = 0,
    init: str = "ring",
) -> str:
    before = message(pg, "learn-msg")
    if files:
        pg.set_input_files("#learn-photos input[type=file]", [str(f) for f in files])
        pg.wait_for_timeout(500)
    if folder:
        fill(pg, "learn-folder", folder)
    fill(pg, "learn-token", token)
    fill(pg, "learn-init", init)
    if not pg.locator("#learn-steps").is_visible():
        pg.click("#learn-advanced button, #learn-advanced .label-wrap")
    fill(pg, "learn-steps", steps)
    fill(pg, "learn-preview-every", preview_every)
    fill(pg, "learn-seed", seed)
    pg.click("#learn-start")
    msg = new_message(pg, "learn-msg", before)
    assert msg.startswith("Refused") or f"at most {steps} steps" in msg, msg
    return msg


def image_bytes(pg, selector: str) -> bytes:
    """The bytes of an image the page shows (fetched from the server as the browser would)."""
    src = pg.locator(selector).first.get_attribute("src")
    if src.startswith("data:"):
        import base64

        return base64.b64decode(src.split(",", 1)[1])
    return pg.request.get(src if src.startswith("http") else pg.url.rstrip("/") + "/" + src.lstrip("/")).body()


def shot(pg, shots: Path, name: str) -> None:
    pg.wait_for_timeout(800)  # let outputs finish fading in
    pg.screenshot(path=str(shots / f"ui-{name}.png"), full_page=True)


# ------------------------------------------------------------------------------------------------ browser tests
def test_learn_a_world_concept_by_clicking(page, browser, server, world_photos, shots, tmp_path):
    """Drop 5 photos, start, watch the progress bar move and a preview appear, reload and open a second tab
    mid-learning (both show the same job, still moving), stop at the step cap, download the word, and load
    the download in diffusers: its row is the learned vector."""
    page.set_input_files("#learn-photos input[type=file]", [str(f) for f in sorted(world_photos.glob("*.png"))])
    page.click("#learn-suggest")  # the world judge ranks the vocabulary against the photos
    hint = new_message(page, "learn-suggestions")
    assert "init auto:" in hint, hint
    assert page.locator("#learn-init textarea").input_value()
    msg = start_job(page, "<teal-ring>", steps=200, preview_every=50)
    assert "teal-ring" in msg and "Refused" not in msg, msg
    first = wait_job(page, lambda: step(page) > 0 and step(page), SLOW, "the first steps")
    wait_job(page, lambda: step(page) > first, 60, "the progress bar to move")
    assert int(page.locator("#learn-progress").get_attribute("value")) > 0
    wait_for(lambda: page.locator("#learn-preview img").count(), SLOW, "a preview image")

    page.reload()
    page.wait_for_selector("#learn-step")
    assert "teal-ring" in page.locator("#learn-status").inner_text()
    if state(page) == "running":
        at_reload = step(page)
        wait_for(lambda: step(page) > at_reload or state(page) == "done", 60, "progress after the reload")
    other = browser.new_page()
    other.goto(server.url)
    other.wait_for_selector("#learn-step")
    assert "teal-ring" in other.locator("#learn-status").inner_text()
    other.close()

    wait_job(page, lambda: state(page) == "done", SLOW, "the job to finish at its step cap")
    assert step(page) == 200
    assert "image-steps/s" in page.locator("#learn-status").inner_text()
    page.wait_for_selector("#learn-download", state="visible")
    page.wait_for_timeout(1500)  # the loss plot and preview settle
    shot(page, shots, "learn")
    with page.expect_download() as dl:
        page.click("#learn-download")
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name == "teal-ring.safetensors"

    _loads_in_diffusers(path, server.workspace.root / "teal-ring", "<teal-ring>")


def _loads_in_diffusers(path: Path, run_folder: Path, token: str) -> None:
    """The downloaded word loads in diffusers, and its row is the run's learned vector."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from oneword.world import model_path

    learned = load_file(run_folder / "learned_embeds.safetensors")[token]
    pipe = StableDiffusionPipeline.from_pretrained(str(model_path()), safety_checker=None)
    pipe.load_textual_inversion(str(path))
    row = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids(token)]
    assert torch.equal(row.detach().float(), learned.reshape(-1).float())


def _resumed_at(folder: Path) -> int:
    """The step a `learn --resume` of this run started at (the worker's first line of its process)."""
    import json

    starts = [json.loads(x) for x in (folder / "ui-progress.jsonl").read_text().splitlines() if '"start"' in x]
    return starts[0]["step"]


def test_queued_jobs_learn_together_and_a_stop_keeps_the_others_work(page, server, tmp_path):
    """Two jobs started one after the other (one from the photo encoder's start) learn together in one learn-many process (both cards' steps
    moving at once, each with its own curves). Stop on one stops the batch with a checkpoint of each: the stopped
    one waits for Resume, the other goes back to the queue and continues from its checkpoint (not from step 0)
    to its step cap; Resume continues the stopped one from its checkpoint; the downloaded word loads in
    diffusers."""
    import json

    root = server.workspace.root
    server.jobs.gather_s = 60  # the second Start comes within this, however slow the machine
    try:
        start_job(page, "<ring-a>", steps=120, folder="teal-ring")
        start_job(page, "<ring-b>", steps=120, folder="teal-ring", seed=1, init="encoder")
    finally:
        server.jobs.gather_s = 3.0
    queue = page.locator("#learn-queue")
    rows = lambda: [x for x in queue.inner_text().splitlines() if "batch-" in x and "running" in x]  # noqa: E731
    wait_for(lambda: len(rows()) == 2, 60, "both jobs running in one batch")
    batch = re.search(r"batch-\d+", rows()[0]).group(0)
    assert all(batch in r for r in rows())
    manifest = [json.loads(x) for x in (root / ".batches" / batch / "jobs.jsonl").read_text().splitlines()]
    assert [(m["token"], m["seed"], m["init"]) for m in manifest] == [
        ("<ring-a>", 0, "ring"),
        ("<ring-b>", 1, "encoder"),
    ]
    choose_job(page, "ring-a")
    wait_job(page, lambda: step(page) >= 25, SLOW, "ring-a learning in the batch")
    assert "ring-b" in page.locator("#learn-shared").inner_text()
    choose_job(page, "ring-b")
    wait_job(page, lambda: step(page) >= 25, 60, "ring-b learning in the batch")
    assert server.jobs.get("ring-a").state == "running" and server.jobs.get("ring-b").state == "running"
    wait_for(lambda: "loss" in page.locator("#learn-status").inner_text(), 30, "ring-b's loss")
    assert (root / "ring-b" / "progress.jsonl").is_file() and (root / "ring-a" / "progress.jsonl").is_file()

    page.click("#learn-stop")
    wait_job(page, lambda: state(page) == "interrupted", 120, "ring-b to checkpoint and stop")
    stopped_at = step(page)
    assert 25 <= stopped_at < 120
    assert "Resume continues exactly" in page.locator("#learn-status").inner_text()
    wait_for(lambda: server.jobs.get("ring-a").state == "done", SLOW, "ring-a to continue alone to its cap")
    assert server.jobs.get("ring-a").progress.step == 120
    assert _resumed_at(root / "ring-a") == stopped_at  # its batch's checkpoint, the same step as ring-b's
    page.click("#learn-resume")
    wait_job(page, lambda: state(page) in ("running", "done"), 60, "ring-b to resume")
    wait_job(page, lambda: state(page) == "done", SLOW, "ring-b to finish")
    assert step(page) == 120 and _resumed_at(root / "ring-b") == stopped_at
    records = [json.loads(x) for x in (root / "ring-b" / "progress.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 120 and any("val_loss" in r for r in records)
    page.wait_for_selector("#learn-download", state="visible")
    with page.expect_download() as dl:
        page.click("#learn-download")
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    _loads_in_diffusers(path, root / "ring-b", "<ring-b>")


def _a1111_word(path: Path, token: str, seed: int, width: int = 128) -> Path:
    from oneword import Concept, save_concept

    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(1, width, generator=g) * 0.3
    return save_concept(Concept(token, vectors, {"init": "star"}), path, format="a1111")


def test_words_tab_reads_converts_and_downloads(page, server, shots, tmp_path):
    """Words dropped in (AUTOMATIC1111 .pt files: one for this world model, one 768 wide for SD 1.x), inspected,
    converted for a tool and downloaded; a world word (128 wide) is refused for the SD tools in one line."""
    from oneword import load_concepts

    tab(page, "Words")
    for name, token, width in (("star.pt", "<star-up>", 128), ("sd.pt", "<sd-word>", 768)):
        before = message(page, "words-msg")
        page.set_input_files("#words-upload input[type=file]", str(_a1111_word(tmp_path / name, token, 1, width)))
        assert f"added {token}" in new_message(page, "words-msg", before)
    wait_for(lambda: "<sd-word>" in page.locator("#words-table").inner_text(), 30, "the dropped-in words listed")
    pick(page, "words-word", "<teal-ring>")
    page.click("#words-inspect")
    text = wait_for(lambda: page.locator("#words-inspect-out textarea").input_value(), 60, "the inspection")
    assert "vector 0 nearest:" in text and "fits this model" in text
    page.click("#words-tool label:has-text('automatic1111')")
    before = message(page, "words-msg")
    page.click("#words-convert")
    assert "works only in oneword" in new_message(page, "words-msg", before)

    pick(page, "words-word", "<sd-word>")
    before = message(page, "words-msg")
    page.click("#words-convert")
    msg = new_message(page, "words-msg", before)
    assert "AUTOMATIC1111" in msg and "embeddings/" in msg, msg
    page.wait_for_selector("#words-download", state="visible")
    shot(page, shots, "words")
    with page.expect_download() as dl:
        page.click("#words-download")
    path = tmp_path / "download" / dl.value.suggested_filename
    dl.value.save_as(path)
    assert path.name == "sd-word.safetensors"
    got = load_concepts(path)[0]
    assert torch.equal(got.vectors, load_concepts(tmp_path / "sd.pt")[0].vectors)


def test_generate_with_two_words_beside_the_caption_baseline(page, shots):
    tab(page, "Generate")
    pick(page, "gen-words", "<teal-ring>")
    pick(page, "gen-words", "<star-up>")
    fill(page, "gen-prompt", "a photo of <teal-ring> and <star-up>")
    page.locator("#gen-n input[type=number]").fill("3")
    page.locator("#gen-n input[type=number]").press("Enter")
    page.click("#gen-go")
    msg = new_message(page, "gen-msg")
    assert "3 images" in msg and "baseline: “a photo of ring and star”" in msg, msg
    wait_for(
        lambda: page.locator("#gen-images img").count() == 3 and page.locator("#gen-baseline img").count() == 3,
        30,
        "both grids",
    )
    assert "seed 0" in page.locator("#gen-images").inner_text()
    shot(page, shots, "generate")


def test_edit_a_painted_region(page, world_photos, shots):
    """Paint with the brush; the edit changes the painted region only: every pixel outside it is the photo's."""
    import numpy as np
    from PIL import Image

    tab(page, "Edit")
    photo = world_photos / "00.png"
    page.set_input_files("#edit-photo input[type=file]", str(photo))
    assert "paint the region" in new_message(page, "edit-msg")
    canvas = wait_for(lambda: page.locator("#edit-canvas canvas").first.bounding_box(), 30, "the canvas")
    page.wait_for_timeout(1000)
    page.locator("#edit-canvas button[aria-label='Brush']").first.click()
    x0, y0 = canvas["x"] + canvas["width"] * 0.5, canvas["y"] + canvas["height"] * 0.55
    for row in range(3):  # few mouse moves: the canvas redraws at each (software rendering)
        page.mouse.move(x0, y0 + row * 22)
        page.mouse.down()
        page.mouse.move(x0 + 140, y0 + row * 22, steps=4)
        page.mouse.up()
    pick(page, "edit-words", "<teal-ring>")
    fill(page, "edit-prompt", "a photo of <teal-ring>")
    before = message(page, "edit-msg")
    page.click("#edit-go")
    msg = new_message(page, "edit-msg", before)
    assert msg.startswith("edited") and "%" in msg, msg
    wait_for(
        lambda: page.locator("#edit-result img").count() and page.locator("#edit-mask img").count(),
        30,
        "the mask and the result",
    )
    shot(page, shots, "edit")
    original = np.asarray(Image.open(photo).convert("RGB"))
    f = Image.open(io.BytesIO(image_bytes(page, "#edit-result img"))).width // original.shape[1]
    result = np.asarray(Image.open(io.BytesIO(image_bytes(page, "#edit-result img"))).convert("RGB"))[::f, ::f]
    mask = np.asarray(Image.open(io.BytesIO(image_bytes(page, "#edit-mask img"))).convert("L"))[::f, ::f] > 127
    assert 0.02 < mask.mean() < 0.6
    assert np.array_equal(result[~mask], original[~mask])
    assert not np.array_equal(result[mask], original[mask])


def _raw_pickle_that_runs(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    return pickle.dumps(Payload(), protocol=2)


def _torch_zip_that_runs(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    buf = io.BytesIO()
    torch.save({"string_to_param": {"*": Payload()}}, buf)
    return buf.getvalue()


def _png_bomb() -> bytes:
    """A 40,000 x 40,000 PNG (1.6 gigapixels declared) in a few hundred bytes."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + 40000 * 3)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * 4, 9))
        + chunk(b"IEND", b"")
    )


def test_hostile_uploads_are_refused_in_one_line(page, server, tmp_path, world_photos):
    """A pickle that would run code (raw, and inside a torch zip), a truncated safetensors, a decompression-bomb
    PNG, a photo name that climbs out of its folder, a folder field outside the photos root: each gets a clear
    message in the page; nothing runs, nothing is written outside the run folder, the server keeps serving."""
    marker = tmp_path / "PWNED"
    good = server.workspace.root / "teal-ring" / "learned_embeds.safetensors"
    files = {
        "evil.pt": _raw_pickle_that_runs(marker),
        "evil-zip.pt": _torch_zip_that_runs(marker),
        "cut.safetensors": good.read_bytes()[: good.stat().st_size // 2],
        "bomb.png": _png_bomb(),
    }
    tab(page, "Words")
    expected = {"evil.pt": "pickle", "evil-zip.pt": "", "cut.safetensors": "", "bomb.png": ""}
    for name, data in files.items():
        before = message(page, "words-msg")
        page.set_input_files(
            "#words-upload input[type=file]", {"name": name, "mimeType": "application/octet-stream", "buffer": data}
        )
        msg = new_message(page, "words-msg", before)
        assert msg.startswith("Refused:") and name in msg and expected[name] in msg, msg
        assert "/tmp" not in msg and "Traceback" not in msg
    assert not marker.exists()

    tab(page, "Learn")
    bomb = {"name": "bomb.png", "mimeType": "image/png", "buffer": _png_bomb()}
    climb = {"name": "../../escaped.png", "mimeType": "image/png", "buffer": (world_photos / "00.png").read_bytes()}
    msg = start_job(page, "<bomb>", steps=10, files=None)
    assert "drop 3-5 photos" in msg
    page.set_input_files("#learn-photos input[type=file]", [bomb, climb])
    page.wait_for_timeout(500)
    before = message(page, "learn-msg")
    page.click("#learn-start")
    msg = new_message(page, "learn-msg", before)
    assert (
        msg.startswith("Refused:") and "bomb.png" in msg and ("bomb" in msg.split("bomb.png", 1)[1] or "MP" in msg)
    ), msg
    root = server.workspace.root  # uploads live in root/.ui-cache/<hash>/NAME: no name climbs out of there
    assert not [p for p in root.parent.rglob("escaped.png") if ".ui-cache" not in p.relative_to(root.parent).parts]
    assert not (root / "bomb").exists()  # a refused job leaves no run folder
    page.reload()
    page.wait_for_selector("#learn-start")
    fill(page, "learn-token", "<outside>")
    fill(page, "learn-folder", "../..")
    before = message(page, "learn-msg")
    page.click("#learn-start")
    assert "outside the folder this server may read" in new_message(page, "learn-msg", before)
    assert not marker.exists()

    page.reload()  # still serving: a fresh page loads and a valid word still goes in
    page.wait_for_selector("#learn-start")
    tab(page, "Words")
    page.set_input_files("#words-upload input[type=file]", str(_a1111_word(tmp_path / "fine.pt", "<fine>", 2)))
    assert "added <fine>" in new_message(page, "words-msg")


def test_evaluate_against_the_caption_baseline(page, shots):
    """Any word the Words tab knows: a dropped-in one on photos named here with the user's caption, and a learned
    one on its own training photos."""
    tab(page, "Evaluate")
    pick(page, "eval-word", "<star-up>")
    page.locator("#eval-n input[type=number]").fill("2")
    page.locator("#eval-n input[type=number]").press("Enter")
    fill(page, "eval-steps", 4)
    page.click("#eval-go")
    assert "drop photos of its concept" in new_message(page, "eval-msg")
    fill(page, "eval-folder", "teal-ring")
    fill(page, "eval-caption", "a star")
    before = message(page, "eval-msg")
    page.click("#eval-go")
    msg = new_message(page, "eval-msg", before, timeout=SLOW)
    assert msg.startswith("evaluated"), msg
    table = page.locator("#eval-table").inner_text()
    assert "<star-up>" in table and '"a star"' in table, table
    fill(page, "eval-folder", "")
    pick(page, "eval-word", "<teal-ring>")
    fill(page, "eval-caption", "a blue ring")
    page.locator("#eval-n input[type=number]").fill("2")
    page.locator("#eval-n input[type=number]").press("Enter")
    fill(page, "eval-steps", 8)
    page.click("#eval-go")
    table = lambda: page.locator("#eval-table").inner_text()  # noqa: E731
    wait_for(lambda: "<teal-ring>" in table(), SLOW, "the learned word's evaluation")
    assert message(page, "eval-msg").startswith("evaluated")
    assert '"a blue ring"' in table() and "reconstruction" in table()
    wait_for(
        lambda: page.locator("#eval-plot img").count() and page.locator("#eval-samples img").count(),
        30,
        "the scatter plot and the samples",
    )
    shot(page, shots, "evaluate")
