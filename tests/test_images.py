"""Photos from phones and strangers: each odd case handled as documented or refused in one line."""

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from oneword.errors import OnewordError
from oneword.images import list_photos, load_image


def px(im, xy):
    return tuple(int(v) for v in im.getpixel(xy))


def one_line(e):
    return "\n" not in str(e.value)


# ------------------------------------------------------------------------------------ load_image
def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (80, 40), "white")
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    im = load_image(tmp_path / "phone.jpg")
    assert im.size == (40, 80)
    assert px(im, (35, 3))[0] > 200 and px(im, (35, 3))[1] < 60  # now at the top-right
    assert px(im, (3, 3)) > (200, 200, 200)


def test_alpha_is_composited_over_white(tmp_path):
    im = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    im.paste((255, 0, 0, 128), (0, 0, 20, 40))
    im.save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.mode == "RGB"
    assert px(out, (30, 5)) == (255, 255, 255)  # transparent black -> white, not black
    r, g, b = px(out, (5, 5))
    assert r == 255 and 125 <= g <= 129 and g == b  # half red over white
    la = Image.new("LA", (40, 40), (0, 0))
    la.save(tmp_path / "la.png")
    assert px(load_image(tmp_path / "la.png"), (1, 1)) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (40, 40), 0)
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.paste(1, (0, 0, 20, 40))
    p.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert px(out, (5, 5)) == (200, 100, 50) and px(out, (30, 5)) == (10, 20, 30)
    p.save(tmp_path / "pt.png", transparency=0)
    out = load_image(tmp_path / "pt.png")
    assert px(out, (30, 5)) == (255, 255, 255) and px(out, (5, 5)) == (200, 100, 50)
    p.save(tmp_path / "p.gif")
    assert px(load_image(tmp_path / "p.gif"), (5, 5)) == (200, 100, 50)


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (40, 40), (0, 0, 0, 0))
    im.paste((0, 255, 255, 0), (0, 0, 20, 40))  # cyan 0, magenta+yellow full = red
    im.save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_image(tmp_path / "c.jpg")
    r, g, b = px(out, (5, 5))
    assert r > 230 and g < 30 and b < 30
    assert min(px(out, (30, 5))) > 240


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16).repeat(40, 0).repeat(10, 1)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_image(tmp_path / "g16.png")
    vals = [px(out, (x, 0))[0] for x in (0, 10, 20, 30)]
    assert vals == [0, 4, 128, 255]  # Pillow's convert("L") would give 0, 255, 255, 255
    assert px(out, (20, 0)) == (128, 128, 128)


def test_grey_and_bilevel(tmp_path):
    Image.new("L", (40, 40), 77).save(tmp_path / "l.png")
    assert px(load_image(tmp_path / "l.png"), (0, 0)) == (77, 77, 77)
    Image.new("1", (40, 40), 1).save(tmp_path / "b.png")
    assert px(load_image(tmp_path / "b.png"), (0, 0)) == (255, 255, 255)


def _png_with_size(w, h):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused(tmp_path):
    for w, h in ((20_000, 20_000), (9_000, 8_000), (100_000, 100_000)):
        (tmp_path / "bomb.png").write_bytes(_png_with_size(w, h))
        with pytest.raises(OnewordError, match="MP|enormous") as e:
            load_image(tmp_path / "bomb.png")
        assert one_line(e) and "bomb.png" in str(e.value)
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    with pytest.raises(OnewordError, match="limit"):
        load_image(tmp_path / "ok.png", max_pixels=1000)


def test_truncated_corrupt_empty_and_fake_images_name_the_file(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(buf, "JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("my holiday notes, not a picture")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (tmp_path / "phone.jpg").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 200)
    (tmp_path / "doc.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    expected = {
        "cut.jpg": "truncated|corrupt",
        "empty.png": "empty",
        "notes.jpg": "looks like text",
        "garbage.png": "corrupt|not an image",
        "phone.jpg": "HEIC",
        "doc.jpg": "not an image",
    }
    for name, match in expected.items():
        with pytest.raises(OnewordError, match=match) as e:
            load_image(tmp_path / name)
        assert name in str(e.value) and one_line(e), name
    with pytest.raises(OnewordError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def _animated(path, fmt):
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


@pytest.mark.parametrize("name,fmt", [("anim.gif", "GIF"), ("anim.webp", "WEBP"), ("anim.png", "PNG")])
def test_animations_are_refused_or_first_frame_on_request(tmp_path, name, fmt):
    _animated(tmp_path / name, fmt)
    with pytest.raises(OnewordError, match="animated") as e:
        load_image(tmp_path / name)
    assert one_line(e)
    with pytest.warns(UserWarning, match="first frame"):
        im = load_image(tmp_path / name, allow_animated=True)
    r, g, b = px(im, (5, 5))
    assert r > 200 and b < 60


def test_tiny_images_are_refused(tmp_path):
    Image.new("RGB", (16, 100)).save(tmp_path / "tiny.png")
    with pytest.raises(OnewordError, match="16x100.*at least 32") as e:
        load_image(tmp_path / "tiny.png")
    assert one_line(e)
    assert load_image(tmp_path / "tiny.png", min_size=16).size == (16, 100)
    with pytest.raises(OnewordError, match="at least 64"):
        load_image(tmp_path / "tiny.png", min_size=64)


def test_corrupt_exif_does_not_lose_the_photo(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (0, 200, 0)).save(buf, "JPEG")
    data = buf.getvalue()
    app1 = b"Exif\0\0" + b"MM\0*\0\0\0\x08\xff\xff" + b"\x01" * 40
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    (tmp_path / "exif.jpg").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = load_image(tmp_path / "exif.jpg")
    assert im.size == (40, 40) and px(im, (5, 5))[1] > 150


def test_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(OnewordError, match="not a regular file"):
        load_image(tmp_path / "pipe.jpg")


# ----------------------------------------------------------------------------------- list_photos
def _img(path):
    Image.new("RGB", (40, 40), "blue").save(path)
    return path


def test_list_photos_sorted_hidden_and_other_files_skipped(tmp_path):
    for n in ("b.jpg", "a.PNG", "c.webp", ".hidden.jpg"):
        _img(tmp_path / n) if not n.endswith("webp") else Image.new("RGB", (40, 40)).save(tmp_path / n, "WEBP")
    (tmp_path / "captions.txt").write_text("hi")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "sub").mkdir()
    _img(tmp_path / "sub" / "x.jpg")
    assert [p.name for p in list_photos(tmp_path)] == ["a.PNG", "b.jpg", "c.webp"]
    with pytest.raises(OnewordError, match="3 photo.*at least 5"):
        list_photos(tmp_path, min_count=5)


def test_list_photos_errors_say_what_was_found(tmp_path):
    with pytest.raises(OnewordError, match="does not exist"):
        list_photos(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(OnewordError, match="not a folder"):
        list_photos(tmp_path / "file.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OnewordError, match="no photos.*found nothing"):
        list_photos(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / "b.pdf").write_text("x")
    with pytest.raises(OnewordError, match=r"2 other file\(s\) \(.pdf, .txt\)") as e:
        list_photos(tmp_path / "docs")
    assert one_line(e)
    (tmp_path / "iphone").mkdir()
    (tmp_path / "iphone" / "IMG_1.HEIC").write_bytes(b"x")
    with pytest.raises(OnewordError, match=".heic.*cannot read"):
        list_photos(tmp_path / "iphone")


def test_list_photos_symlinks(tmp_path):
    outside = _img(tmp_path / "secret.jpg")
    folder = tmp_path / "photos"
    folder.mkdir()
    _img(folder / "a.jpg")
    (folder / "alias.jpg").symlink_to(folder / "a.jpg")
    assert [p.name for p in list_photos(folder)] == ["a.jpg", "alias.jpg"]
    (folder / "leak.jpg").symlink_to(outside)
    with pytest.raises(OnewordError, match="outside") as e:
        list_photos(folder)
    assert "leak.jpg" in str(e.value)
    (folder / "leak.jpg").unlink()
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    with pytest.raises(OnewordError, match="broken symlink"):
        list_photos(folder)
    (folder / "dangling.jpg").unlink()
    (folder / "up").symlink_to(tmp_path)
    with pytest.raises(OnewordError, match="outside"):
        list_photos(folder)
